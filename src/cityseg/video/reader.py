"""Reading videos with PyAV: which inputs are videos, what a video holds, and its frames decoded in a thread.

:func:`open_video` opens a file and checks it has a video stream FFmpeg can decode (a :class:`VideoInfo` says
its size, frame rate and codec); :class:`FrameReader` decodes it in its own thread into a bounded
:class:`~cityseg.video.pipes.Pipe`, each frame upright RGB and, when asked, already prepared for the model,
so decoding overlaps inference. A file cut short or damaged part-way stops at the last good frame: the
reader keeps the frames before it and says what went wrong in ``failure``.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.errors import CitysegError, first_line
from cityseg.files import natural_key
from cityseg.images import VIDEO_SUFFIXES
from cityseg.video.pipes import Pipe, Worker

FALLBACK_FPS = Fraction(30)  # a stream whose header gives no frame rate at all
RATE_TOLERANCE = 0.01  # average and base frame rates further apart than this: a variable frame rate
FRAME_TIME_SPREAD = 1.5  # longest frame time over shortest beyond this: a variable frame rate
TRUNCATED_SHARE = 0.95  # fewer frames than this share of what the header's duration holds: cut short
DECODE_QUEUE = 4  # decoded frames waiting for the model (a 1280x720 frame is 2.6 MiB)
CONVERT_ADVICE = "convert it first, e.g. ffmpeg -i {path} -c:v libx264 -pix_fmt yuv420p converted.mp4"


def is_video_name(path: str | os.PathLike) -> bool:
    """True for a name with a video suffix (:data:`cityseg.images.VIDEO_SUFFIXES`) that is not hidden.

    Example:
        >>> is_video_name("drive.MP4"), is_video_name("street.jpg"), is_video_name(".drive.mp4")
        (True, False, False)
    """
    name = Path(path).name.lower()
    return name.endswith(VIDEO_SUFFIXES) and not name.startswith(".")


def split_video_inputs(
    inputs: Sequence[str | os.PathLike], pairs: bool = False
) -> tuple[list[str | os.PathLike], list[Path]]:
    """Separate videos from photo inputs: (what :func:`cityseg.images.expand_inputs` should read, video files).

    A video file goes to the second list; a glob pattern for videos (``'drives/*.mp4'``) is expanded there;
    a folder gives its videos and stays a photo input if it holds anything else. Other inputs are left to
    the photo side, which reports what does not exist.

    Raises:
        CitysegError: a pattern for videos that matches none; videos with ``pairs`` (pair images only).
    """
    photos: list[str | os.PathLike] = []
    videos: list[Path] = []
    for item in inputs:
        path, text = Path(item), str(item)
        if path.is_dir():
            inside = sorted((p for p in path.iterdir() if is_video_name(p) and p.is_file()), key=natural_key)
            videos += inside
            if not inside or any(not is_video_name(p) for p in path.iterdir() if p.is_file()):
                photos.append(item)
        elif path.is_file():
            (videos.append(path) if is_video_name(path) else photos.append(item))
        elif any(char in text for char in "*?[") and is_video_name(text):
            matches = sorted((Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()), key=natural_key)
            if not matches:
                raise CitysegError(f"no videos match {text}; check the pattern (quote it so the shell leaves it)")
            videos += matches
        else:
            photos.append(item)
    if videos and pairs:
        raise CitysegError(f"--pairs is for pair images, and {videos[0]} is a video; leave --pairs out for videos")
    unique: dict[Path, Path] = {}
    for path in videos:
        unique.setdefault(path.resolve(), path)
    return photos, list(unique.values())


# ---- what a video holds -------------------------------------------------------------------------


@dataclass
class VideoInfo:
    """What the header of a video says, and what reading it found (``rotation``, ``variable_rate``)."""

    path: Path
    codec: str  # the decoder's name, e.g. h264
    width: int  # as stored; the frames come out turned upright (see rotation)
    height: int
    fps: Fraction  # the average frame rate (or the fallback, with a note)
    frames: int | None  # the header's frame count; None when it has none
    duration_s: float | None  # the header's duration
    variable_rate: bool = False
    rotation: int = 0  # degrees counter-clockwise the player turns the frames (phone videos)
    notes: list[str] = field(default_factory=list)

    @property
    def expected_frames(self) -> int | None:
        """Frames the header promises: its count, else its duration times the frame rate."""
        if self.frames:
            return self.frames
        if self.duration_s:
            return round(self.duration_s * float(self.fps))
        return None


def open_video(path: str | os.PathLike) -> tuple[Any, Any, VideoInfo]:
    """Open a video file: (PyAV container, its first video stream, :class:`VideoInfo`).

    Raises:
        CitysegError: the file is missing, empty, not a video FFmpeg can read (or its header is cut off),
            has no video stream, or a codec this FFmpeg build cannot decode; one line naming the file.
    """
    import av

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CitysegError(f"cannot read video {path}: {exc.strerror or exc}; check the path") from None
    if size == 0:
        raise CitysegError(f"video {path} is empty (0 bytes, a zero-length video); nothing to segment")
    try:
        # metadata (titles, tags) that is not UTF-8 is replaced, not fatal: PyAV raised UnicodeDecodeError for it
        # while opening (found by fuzzing), and the frames are what matter here
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.EOFError:
        raise CitysegError(f"video {path} ends before its first frame (a zero-length or cut-off video)") from None
    except av.FFmpegError as exc:
        raise CitysegError(
            f"cannot open video {path}: {_reason(exc)}; it is not a video FFmpeg reads, or its header is "
            "damaged or cut off (an interrupted recording loses the MP4 index)"
        ) from None
    try:
        stream, info = _video_stream(container, path)
    except BaseException:
        container.close()
        raise
    return container, stream, info


def _video_stream(container: Any, path: Path) -> tuple[Any, VideoInfo]:
    if not container.streams:
        raise CitysegError(f"video {path} holds no streams (a zero-length or unfinished video); nothing to segment")
    if not container.streams.video:
        kinds = ", ".join(sorted({f"{s.type} ({getattr(s.codec_context, 'name', '?')})" for s in container.streams}))
        raise CitysegError(f"{path} has no video stream, only {kinds}; pass a video file")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise CitysegError(
            f"{path}: its video codec is not one this FFmpeg build can decode; {CONVERT_ADVICE.format(path=path)}"
        )
    stream.codec_context.thread_type = "AUTO"  # FFmpeg's frame and slice threads: decoding stays a small share
    info = VideoInfo(
        path=path,
        codec=stream.codec_context.name,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=FALLBACK_FPS,
        frames=int(stream.frames) or None,
        duration_s=_duration_s(container, stream),
    )
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate and rate > 0:
        info.fps = Fraction(rate)
    else:
        info.notes.append(f"the header gives no frame rate: the overlay plays at {float(FALLBACK_FPS):g} fps")
    base = stream.base_rate
    if stream.average_rate and base and abs(float(base) / float(stream.average_rate) - 1) > RATE_TOLERANCE:
        info.variable_rate = True
    return stream, info


def _duration_s(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the errno and the file name PyAV appends."""
    text = first_line(exc)
    strerror = getattr(exc, "strerror", None)
    return strerror or text


# ---- decoding in a thread -----------------------------------------------------------------------


@dataclass
class DecodedFrame:
    """One frame: its index from 0, upright RGB (H, W, 3) uint8, and what ``prepare`` made of it (or None)."""

    index: int
    rgb: np.ndarray
    prepared: Any = None


class FrameReader:
    """Decodes a video in a thread: iterate for :class:`DecodedFrame` objects, in order, a few queued at a time.

    Args:
        path: the video file.
        prepare: called in the decoding thread on (index, RGB frame) of the frames ``wanted`` says; its
            result travels with the frame (e.g. the model's input, so preprocessing overlaps inference too).
        wanted: which frame indices to prepare (default: all).
        queue_size: frames decoded ahead.
        max_frames: stop after this many frames, setting ``over_limit`` if the video holds more (a server's limit).

    After the iteration, ``frames`` is how many frames came out, ``failure`` the reason decoding stopped
    early (a corrupt or truncated file) or None, ``busy_s`` the decoding thread's working seconds.
    Use it as a context manager: leaving stops the thread and closes the file.

    Raises:
        CitysegError: from :func:`open_video`, when it is created.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        prepare: Callable[[int, np.ndarray], Any] | None = None,
        wanted: Callable[[int], bool] | None = None,
        queue_size: int = DECODE_QUEUE,
        max_frames: int | None = None,
    ):
        self.container, self.stream, self.info = open_video(path)
        self.prepare = prepare
        self.wanted = wanted or (lambda index: True)
        self.max_frames = max_frames
        self.over_limit = False
        self.frames = 0
        self.failure: str | None = None
        self._pipe = Pipe(queue_size)
        self._worker = Worker(f"decode {self.info.path.name}", self._decode)
        self._last_pts: int | None = None
        self._steps = [0, 0]  # shortest and longest step between frame timestamps, in the stream's time base

    @property
    def busy_s(self) -> float:
        return self._worker.busy_s

    def __enter__(self) -> FrameReader:
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop decoding (if it still runs) and close the file."""
        self._pipe.cancel()
        if self._worker.ident is not None:  # started
            self._worker.join()
        if self.container is not None:
            self.container.close()
        # PyAV's container, stream and decoder sit in reference cycles with this reader: dropped here, the decoder
        # and its codec threads go at once, not at the garbage collector's next full pass (a server's threads
        # climbed to 120 in 30 minutes of videos, found by the soak benchmark)
        self.container = self.stream = None

    def __iter__(self) -> Iterator[DecodedFrame]:
        yield from self._pipe

    def _decode(self) -> None:
        import av

        error: BaseException | None = None
        try:
            for frame in self._frames():
                if self.max_frames is not None and self.frames >= self.max_frames:
                    self.over_limit = True
                    break
                with self._worker.timed():
                    item = self._convert(frame)
                if not self._pipe.put(item):
                    return  # the consumer stopped
        except av.FFmpegError as exc:  # a damaged or cut-off file: keep the good frames before it
            self.failure = _reason(exc)
        except BaseException as exc:
            error = exc
        if error is None and self.failure is None and not self.over_limit:
            self._check_complete()
        self._pipe.close(error)

    def _frames(self) -> Iterator[Any]:
        """The stream's frames in presentation order; at a damaged packet, the frames decoded so far, then the error."""
        import av

        codec = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                with self._worker.timed():
                    frames = codec.decode(packet) if packet.size else codec.decode(None)
                yield from frames
        except av.FFmpegError:
            held: list[Any] = []
            with contextlib.suppress(av.FFmpegError):
                held = codec.decode(None)  # the frames the decoder holds back for reordering are good ones
            yield from held
            raise

    def _convert(self, frame: Any) -> DecodedFrame:
        rgb = frame.to_ndarray(format="rgb24")  # (h, w, 3) as stored; swscale converts any pixel format
        if self.frames == 0:
            self._first_frame(frame)
        if self.info.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=self.info.rotation // 90))
        self._time_step(frame.pts)
        index = self.frames
        self.frames += 1
        prepared = self.prepare(index, rgb) if self.prepare is not None and self.wanted(index) else None
        return DecodedFrame(index, rgb, prepared)

    def _first_frame(self, frame: Any) -> None:
        rotation = round((frame.rotation or 0) / 90) * 90 % 360
        if rotation:
            self.info.rotation = rotation
            self.info.notes.append(f"turned {rotation} degrees upright, as its display matrix asks (a phone video)")

    def _check_complete(self) -> None:
        """A file that ends without an error but well before its header's promise was cut short."""
        expected = self.info.expected_frames
        if self.frames and expected and self.frames < math.floor(TRUNCATED_SHARE * expected) - 1:
            self.failure = f"the file ends after {self.frames} of the {expected} frames its header lists"
        shortest, longest = self._steps
        if shortest and longest > FRAME_TIME_SPREAD * shortest:
            self.info.variable_rate = True

    def _time_step(self, pts: int | None) -> None:
        """Track the shortest and longest step between timestamps (two numbers, however long the video)."""
        if pts is None:
            return
        if self._last_pts is not None and pts > self._last_pts:
            step = int(pts) - self._last_pts
            shortest, longest = self._steps
            self._steps = [min(shortest, step) if shortest else step, max(longest, step)]
        self._last_pts = int(pts)
