"""Writing the overlay video with PyAV, and the per-frame label PNGs, in an encoding thread.

:data:`ENCODERS` lists the encoders tried, best first: H.264 (libx264, then OpenH264), which every player
and browser opens, and MPEG-4 Part 2 where the FFmpeg build has no H.264 encoder (VLC, QuickTime and the
Windows and Android players open it; browsers may not). The summary says which one wrote the file.

libx264 runs with preset ``ultrafast`` plus its deblocking filter and CABAC, ``crf`` 23, yuv420p, two threads:

- ``ultrafast`` with deblocking and CABAC: on a CPU the model needs the cores, and the pipeline runs at the
  pace of its slowest stage, so the encoder should take a small share. On 40 overlay frames of the
  generated 1280x720 drive (``benchmarks/video_steps.py``, one thread): ``superfast`` 22 ms of CPU a
  frame, 37 KiB a frame, PSNR 31.6 dB against the RGB overlay; ``ultrafast`` 9.2 ms, 49 KiB, 31.4 dB, and
  blockier, as it drops the deblocking filter and CABAC; ``ultrafast`` with both back 11.2 ms, 43 KiB,
  31.6 dB: ``superfast``'s quality for half its time and a sixth more bytes (what ``superfast`` adds,
  motion search and partitions, buys little on flat overlay colours). CABAC makes the stream H.264 Main
  profile, which every browser plays.
- ``crf`` 23, x264's default constant quality: the file's size follows what the frames hold, not a bit rate
  that is too much for a still street and too little for a busy one;
- yuv420p (4:2:0 chroma), because H.264 in any other layout is one many players refuse; it needs an even
  width and height, so an odd frame is padded by repeating its last column or row (said in the summary);
- two threads: the encoder overlaps the drawing of the next overlay; more would only compete with the model.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cityseg.errors import CitysegError, first_line
from cityseg.outputs import write_label_png
from cityseg.video.pipes import Pipe, Worker

ENCODER_THREADS = 2  # see the module docstring
ENCODE_QUEUE = 4  # labelled frames waiting for the encoder
BITS_PER_PIXEL = 0.12  # bit rate of the encoders without a constant-quality mode (2.6 Mbit/s at 720p30)
FRAME_DIGITS = 6  # frame numbers in the label PNG names: 000000 ... 999999 (9 hours at 30 fps)


@dataclass(frozen=True)
class Encoder:
    """An FFmpeg video encoder and how to run it: ``label`` says in the summary what wrote the file."""

    name: str
    label: str
    options: dict[str, str] = field(default_factory=dict)
    constant_quality: bool = False  # sizes itself by quality (crf); the others get a bit rate


ENCODERS = {  # preference order: the first one this FFmpeg build has is used
    "libx264": Encoder(
        "libx264",
        "H.264 (libx264)",
        {"preset": "ultrafast", "deblock": "0:0", "coder": "cabac", "crf": "23"},
        constant_quality=True,
    ),
    "libopenh264": Encoder("libopenh264", "H.264 (OpenH264)"),
    "mpeg4": Encoder("mpeg4", "MPEG-4 Part 2 (no H.264 encoder in this FFmpeg build)"),
}


def choose_encoder(names: tuple[str, ...] | None = None) -> Encoder:
    """The first of ``names`` (default: all of :data:`ENCODERS`, in order) that this FFmpeg build can encode with.

    Raises:
        CitysegError: none of them is there.
    """
    import av

    for name in names or tuple(ENCODERS):
        encoder = ENCODERS[name]
        try:
            av.codec.Codec(encoder.name, "w")
        except (av.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
            continue
        return encoder
    raise CitysegError(
        f"this FFmpeg build (PyAV {av.__version__}) has none of the video encoders {', '.join(ENCODERS)}; "
        "install the PyAV wheel from PyPI (pip install av), which has libx264"
    )


def even_size(width: int, height: int) -> tuple[int, int]:
    """The nearest even size at least as large: yuv420p video needs an even width and height.

    Example:
        >>> even_size(97, 64)
        (98, 64)
    """
    return width + width % 2, height + height % 2


class OverlayVideoWriter:
    """An MP4 file of RGB frames, opened on the first frame (whose size it takes), closed by :meth:`close`.

    Args:
        path: the file to write (a temporary name: the caller renames it when complete).
        fps: the frame rate; frames are spaced evenly at it.
        encoder: which encoder (see :func:`choose_encoder`).
        shown_as: how messages name the final file.
    """

    def __init__(self, path: Path, fps: Fraction, encoder: Encoder, shown_as: Path | None = None):
        self.path, self.fps, self.encoder = Path(path), Fraction(fps), encoder
        self.shown_as = shown_as or self.path
        self.container: Any = None
        self.stream: Any = None
        self.size: tuple[int, int] | None = None  # (width, height) of the video, even
        self.padded = False
        self.frames = 0

    def write(self, image: Image.Image) -> None:
        """Encode one RGB frame (every frame must have the first one's size)."""
        import av

        try:
            if self.container is None:
                self._open(image.width, image.height)
            frame = av.VideoFrame.from_ndarray(self._pad(np.asarray(image)), format="rgb24")
            frame.pts = self.frames
            for packet in self.stream.encode(frame):  # PyAV converts RGB to the stream's yuv420p
                self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise CitysegError(f"cannot write {self.shown_as}: {first_line(exc)}; check free space") from None
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        import av

        self.size = even_size(width, height)
        self.padded = self.size != (width, height)
        self.container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        stream = self.container.add_stream(self.encoder.name, rate=self.fps, options=dict(self.encoder.options))
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = min(ENCODER_THREADS, os.cpu_count() or 1)
        if not self.encoder.constant_quality:
            stream.codec_context.bit_rate = int(BITS_PER_PIXEL * self.size[0] * self.size[1] * float(self.fps))
        self.stream = stream

    def _pad(self, array: np.ndarray) -> np.ndarray:
        """(h, w, 3) to the even size, repeating the last column or row."""
        height, width = array.shape[:2]
        want_w, want_h = self.size or even_size(width, height)
        if (want_w, want_h) == (width, height):
            return array
        return np.pad(array, ((0, want_h - height), (0, want_w - width), (0, 0)), mode="edge")

    def close(self) -> None:
        """Flush the encoder and finish the file (nothing to do if no frame came)."""
        import av

        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise CitysegError(f"cannot write {self.shown_as}: {first_line(exc)}; check free space") from None
        self.container = self.stream = None  # PyAV frees the encoder and its threads now, not at a later GC

    def abort(self) -> None:
        """Close the file without flushing (the caller deletes it)."""
        if self.container is not None:
            with contextlib.suppress(Exception):  # the file is thrown away; its closing errors say nothing new
                self.container.close()
            self.container = self.stream = None


def frame_png_path(folder: Path, index: int, suffix: str) -> Path:
    """Where frame ``index``'s label PNG goes: ``FOLDER/000042_<suffix>.png``."""
    return folder / f"{index:0{FRAME_DIGITS}d}_{suffix}.png"


class FrameSink:
    """The encoding thread: draws each labelled frame's overlay, encodes it, and writes its label PNG.

    Args:
        writer: the overlay video.
        draw: (RGB frame, labels) -> overlay image.
        on_frame: called in the thread after each frame with (index, labels) (the progress bar, the flicker count).
        label_pngs: (folder, ids function, suffix) to write each frame's label PNG, or None.
        queue_size: frames waiting.
        resize: (what was put as labels, the frame's (H, W)) -> its (H, W) labels, run first in the thread
            (the pipeline puts the model's scores and resizes here); None: labels are put as they are.

    Feed it with :meth:`put`, end with :meth:`finish` (which flushes the video and raises the thread's
    errors) or :meth:`abort`.
    """

    def __init__(
        self,
        writer: OverlayVideoWriter,
        draw: Callable[[np.ndarray, np.ndarray], Image.Image],
        on_frame: Callable[[int, np.ndarray], None],
        label_pngs: tuple[Path, Callable[[np.ndarray], np.ndarray], str] | None = None,
        *,
        queue_size: int = ENCODE_QUEUE,
        resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
    ):
        self.writer, self.draw, self.on_frame, self.label_pngs = writer, draw, on_frame, label_pngs
        self.resize = resize
        self.pngs_written = 0
        self._pipe = Pipe(queue_size)
        self._worker = Worker("encode", self._run)
        self._worker.start()

    @property
    def busy_s(self) -> float:
        return self._worker.busy_s

    def put(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        """Queue a labelled frame; if the thread has stopped on an error, raise it here."""
        if not self._pipe.put((index, rgb, labels)):
            self._worker.finish()  # it cancelled the pipe: its error
            raise CitysegError(f"writing {self.writer.shown_as} stopped")

    def finish(self) -> None:
        """Wait for the queued frames, then finish the video file."""
        self._pipe.close()
        self._worker.finish()
        with self._worker.timed():
            self.writer.close()

    def abort(self) -> None:
        """Stop at once, dropping queued frames; the video file is closed unfinished."""
        self._pipe.cancel()
        self._worker.join()
        self.writer.abort()

    def _run(self) -> None:
        try:
            for index, rgb, labels in self._pipe:
                with self._worker.timed():
                    if self.resize is not None:
                        labels = self.resize(labels, rgb.shape[:2])
                    self.writer.write(self.draw(rgb, labels))
                    if self.label_pngs is not None:
                        folder, to_ids, suffix = self.label_pngs
                        write_label_png(frame_png_path(folder, index, suffix), to_ids(labels))
                        self.pngs_written += 1
                    self.on_frame(index, labels)
        except BaseException:
            self._pipe.cancel()  # the producer's next put() returns False and finds the error
            raise
