"""Generated drives: the camera driving down one procedurally drawn street, with the exact labels of every frame.

``cityseg synth --video OUT.mp4`` writes a drive as a video, and the exact label ids of each frame beside
it (``OUT_labelIds/000000.png``, ``000001.png``, ... lossless PNGs, frame numbers from 0), so a video
segmentation can be scored against the truth.

A drive lays out one street from its seed, longer than a still scene's by the distance it drives, and draws
every frame from the camera's pose at that frame (see ``scene.Shot``): the camera moves forward along the
street at the drive's speed (8 to 12 m/s) and sways a few centimetres sideways; the traffic in the other
lanes and the cyclists move on at their own speeds, and the camera's lane is kept clear. The placement is
the same in every frame, so geometry never jumps; only the sensor noise and grain are new in each frame.
Frame k shows time k / fps. The video is H.264 (libx264, yuv420p, constant quality ``crf`` 18), which
needs an even width and height.
"""

from __future__ import annotations

import collections
import contextlib
import math
import numbers
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from cityseg.classes import NUM_LABEL_IDS
from cityseg.errors import CitysegError, first_line
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.synth.render import render_scene
from cityseg.synth.scene import LAYOUT, MOTION, Shot
from cityseg.synth.write import train_class_shares

DRIVE_SECONDS = 5.0  # length of a drive, seconds
DRIVE_FPS = 30  # frames per second
DRIVE_SIZE = (256, 512)  # (height, width) of its frames: the 2:1 of a Cityscapes photo
MAX_SECONDS = 600.0  # the street is placed again for every frame: its length is what a frame costs
MAX_FPS = 120
MAX_WORKERS = 64
SIDES = (32, 4096)  # smallest and largest frame height or width, pixels
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")  # containers that hold H.264
SPEEDS = (8.0, 12.0)  # metres per second
MARGIN = 10.0  # metres of street laid out beyond where a drive ends
DRIVE_TAG = 0x64726976  # "driv": a drive's seeds never meet a still scene's (seed, index)
FRAME_NAME = re.compile(r"^\d{6}\.png$")
ENCODER = "libx264"
ENCODER_OPTIONS = {"crf": "18", "preset": "fast"}  # a ground-truth video: close to the rendered frames


@dataclass(frozen=True)
class Drive:
    """One generated drive: its frames, from :meth:`plan`; iterate it for (photo, label ids) per frame.

    Example:
        >>> drive = Drive.plan(seconds=0.2, fps=10, size=(64, 128), seed=0)
        >>> len(drive), drive.duration
        (2, 0.2)
        >>> photo, label_ids = drive.frame(1)
        >>> photo.shape, label_ids.shape
        ((64, 128, 3), (64, 128))
    """

    seed: int
    size: tuple[int, int]  # (height, width)
    fps: int
    frames: int
    speed: float  # metres per second
    sway: tuple[float, float, float]  # (amplitude in metres, period in seconds, phase) of the sideways sway

    @classmethod
    def plan(
        cls, seconds: float = DRIVE_SECONDS, fps: int = DRIVE_FPS, size: tuple[int, int] = DRIVE_SIZE, seed: int = 0
    ) -> Drive:
        """The drive ``seed`` gives for ``seconds`` at ``fps`` frames per second, frames of ``size`` (height, width).

        Raises:
            CitysegError: a length, rate, size or seed out of range, in one line.
        """
        check_drive_arguments(seconds, fps, size, seed)
        motion = np.random.default_rng([int(seed), DRIVE_TAG, MOTION])
        low, high = (SPEEDS[0], 0.04, 4.0, 0.0), (SPEEDS[1], 0.15, 8.0, 2 * math.pi)
        speed, amplitude, period, phase = motion.uniform(low, high)  # sway: amplitude (m), period (s), phase
        return cls(
            seed=int(seed),
            size=(int(size[0]), int(size[1])),
            fps=int(fps),
            frames=max(1, round(seconds * fps)),
            speed=float(speed),
            sway=(float(amplitude), float(period), float(phase)),
        )

    @property
    def duration(self) -> float:
        """Seconds of video."""
        return self.frames / self.fps

    @property
    def distance(self) -> float:
        """Metres the camera drives from the first frame to the last."""
        return self.speed * (self.frames - 1) / self.fps

    def shot(self, index: int) -> Shot:
        """Where frame ``index`` (0-based) is taken from."""
        t = index / self.fps
        amplitude, period, phase = self.sway
        return Shot(
            entropy=(self.seed, DRIVE_TAG),
            frame=index,
            time=t,
            x=amplitude * math.sin(2 * math.pi * t / period + phase),
            z=self.speed * t,
            stretch=self.distance + MARGIN,
        )

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``index``: (photo, label_ids), (H, W, 3) uint8 RGB and (H, W) uint8 official label ids."""
        if not 0 <= index < self.frames:
            raise IndexError(f"frame {index} of a drive of {self.frames} frames")
        shot = self.shot(index)
        return render_scene(shot.generator(LAYOUT), self.size, shot)

    def __len__(self) -> int:
        return self.frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self.frame(index) for index in range(self.frames))

    def rendered(self, workers: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The frames in order, drawn by ``workers`` processes (the same frames whatever their number)."""
        if workers <= 1 or self.frames < 2:
            yield from self
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the caller may hold threads (torch, an encoder) that a forked child would inherit stuck
        pool = ProcessPoolExecutor(min(workers, self.frames), mp_context=multiprocessing.get_context("spawn"))
        pending: collections.deque = collections.deque()
        try:
            for index in range(self.frames):
                pending.append(pool.submit(self.frame, index))
                if len(pending) > 2 * workers:  # a few frames ahead, not the whole drive in memory
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def drive_frames(
    seconds: float = DRIVE_SECONDS,
    fps: int = DRIVE_FPS,
    size: tuple[int, int] = DRIVE_SIZE,
    seed: int = 0,
    workers: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The frames of a generated drive, one (photo, label_ids) at a time (see :class:`Drive`).

    Args:
        seconds: length of the drive; it has ``round(seconds * fps)`` frames (at least one).
        fps: frames per second.
        size: (height, width) of each frame, both even, 32 to 4096.
        seed: random seed (0 or more): the same seed gives the same frames.
        workers: processes drawing frames at once (frames are independent; 2 on 2 cores draws about twice as fast).
            They are spawned, so a script that asks for more than one needs ``if __name__ == "__main__":``.

    Returns:
        An iterator of ((H, W, 3) uint8 RGB photo, (H, W) uint8 official label ids), in frame order.
    """
    check_workers(workers)
    return Drive.plan(seconds, fps, size, seed).rendered(workers)


def check_workers(workers: int) -> None:
    if not _whole(workers) or not 1 <= workers <= MAX_WORKERS:
        raise CitysegError(f"--workers must be a whole number from 1 to {MAX_WORKERS}, got {workers}")


def check_drive_arguments(seconds: float, fps: int, size: tuple[int, int], seed: int) -> None:
    """Raise a one-line :class:`CitysegError` for a drive length, frame rate, frame size or seed out of range."""
    if not (isinstance(seconds, numbers.Real) and math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise CitysegError(f"--seconds must be above 0 and at most {MAX_SECONDS:g}, got {seconds}")
    if not _whole(fps) or not 1 <= fps <= MAX_FPS:
        raise CitysegError(f"--fps must be a whole number from 1 to {MAX_FPS}, got {fps}")
    if len(size) != 2 or not all(_whole(side) for side in size):
        raise CitysegError(f"--size must be HEIGHTxWIDTH in whole pixels, e.g. 256x512, got {size}")
    height, width = size
    if not (SIDES[0] <= height <= SIDES[1] and SIDES[0] <= width <= SIDES[1]):
        raise CitysegError(f"--size must be {SIDES[0]} to {SIDES[1]} pixels each way, got {height}x{width}")
    if height % 2 or width % 2:
        raise CitysegError(
            f"--size must be even both ways (H.264 video in yuv420p), got {height}x{width}; "
            f"try {height + height % 2}x{width + width % 2}"
        )
    if not _whole(seed) or seed < 0:
        raise CitysegError(f"--seed must be a whole number, 0 or more, got {seed}")


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class DriveSummary:
    """What :func:`write_drive` wrote; ``str()`` gives the CLI's short report."""

    video: Path
    labels: Path  # the folder of per-frame label id PNGs
    frames: int
    fps: int
    size: tuple[int, int]  # (height, width)
    speed: float  # metres per second
    class_shares: dict[str, float]  # train19 class -> share of all pixels, classes present only, largest first
    seconds: float  # time taken

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    def label_path(self, index: int) -> Path:
        """The exact label ids of frame ``index`` (0-based)."""
        return self.labels / f"{index:06d}.png"

    def __str__(self) -> str:
        height, width = self.size
        classes = ", ".join(f"{name} {share:.1%}" for name, share in self.class_shares.items())
        last = f" ... {self.label_path(self.frames - 1).name}" if self.frames > 1 else ""
        return (
            f"wrote a {self.duration:g} s generated drive to {self.video}: {self.frames} frames of "
            f"{height}x{width} (HxW) at {self.fps} fps, driving at {self.speed:.1f} m/s, in {self.seconds:.1f} s "
            f"({self.frames / max(self.seconds, 1e-9):.1f} frames/s)\n"
            f"exact label ids per frame: {self.label_path(0)}{last}\n"
            f"classes present ({len(self.class_shares)} of 19, share of pixels): {classes}"
        )


def labels_folder(video: str | os.PathLike) -> Path:
    """Where a drive video's label id PNGs go: ``OUT_labelIds/`` beside ``OUT.mp4``."""
    video = Path(video)
    return video.with_name(f"{video.stem}_labelIds")


def write_drive(
    out: str | os.PathLike,
    seconds: float = DRIVE_SECONDS,
    fps: int = DRIVE_FPS,
    size: tuple[int, int] = DRIVE_SIZE,
    seed: int = 0,
    workers: int = 1,
) -> DriveSummary:
    """Write a generated drive as an H.264 video, and the exact label ids of each frame beside it.

    Both appear only when complete: the video and the label folder are written under temporary names and
    renamed at the end; a label folder from an earlier run of the same name is replaced.

    Args:
        out: the video file (``.mp4``, ``.mkv`` or ``.mov``); the label ids of frame k go to
            ``OUT_labelIds/kkkkkk.png`` (6 digits, from 000000), official Cityscapes label ids, lossless.
        seconds, fps, size, seed: the drive (see :func:`drive_frames`).
        workers: processes drawing frames at once (see :func:`drive_frames`); the files are the same.

    Returns:
        A :class:`DriveSummary`: where things went, the frames, the speed, class pixel shares, time taken.

    Raises:
        CitysegError: bad arguments, an unwritable place, or a label folder holding other files.

    Example:
        >>> print(write_drive("drive.mp4", seconds=20, fps=30, size=(720, 1280), seed=0))  # doctest: +SKIP
    """
    drive = Drive.plan(seconds, fps, size, seed)
    check_workers(workers)
    video, labels = _check_targets(Path(out))
    started = time.perf_counter()
    pixels = np.zeros(256, dtype=np.int64)  # per official label id
    staging = labels.with_name(f".{labels.name}.{uuid.uuid4().hex[:12]}.tmp")  # mkdir: the user's umask applies
    try:
        staging.mkdir()
    except OSError as exc:
        raise CitysegError(f"cannot write {labels}: {exc.strerror or exc}; choose another place") from None
    try:
        with atomic_path(video) as tmp:
            with _VideoFile(tmp, drive, shown_as=video) as encoder:
                for index, (photo, label_ids) in enumerate(drive.rendered(workers)):
                    encoder.write(photo)
                    _write_labels(staging / f"{index:06d}.png", label_ids, labels)
                    pixels += np.bincount(label_ids.ravel(), minlength=256)
            _replace_folder(staging, labels)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    seconds_taken = time.perf_counter() - started
    shares = train_class_shares(pixels[:NUM_LABEL_IDS])
    return DriveSummary(video, labels, drive.frames, drive.fps, drive.size, drive.speed, shares, seconds_taken)


def _check_targets(video: Path) -> tuple[Path, Path]:
    """The video path and its label folder, checked before any frame is drawn."""
    if video.suffix.lower() not in VIDEO_SUFFIXES:
        raise CitysegError(f"--video must name a {', '.join(VIDEO_SUFFIXES)} file, got {video}")
    if video.is_dir():
        raise CitysegError(f"--video {video} is a folder; name the video file, e.g. {video / 'drive.mp4'}")
    ensure_writable_dir(video.parent)
    labels = labels_folder(video)
    if labels.exists() and not labels.is_dir():
        raise CitysegError(f"{labels} is a file, where the drive's label ids would go; move it or choose another name")
    if labels.is_dir():
        strangers = [path.name for path in labels.iterdir() if not FRAME_NAME.match(path.name)]
        if strangers:
            raise CitysegError(
                f"{labels} holds files cityseg synth did not write (e.g. {strangers[0]}); "
                "move them or choose another video name"
            )
    return video, labels


def _write_labels(path: Path, label_ids: np.ndarray, shown: Path) -> None:
    try:
        Image.fromarray(label_ids).save(path, format="PNG", compress_level=1)  # flat runs compress well anyway
    except OSError as exc:
        raise CitysegError(f"cannot write {shown / path.name}: {exc.strerror or exc}; free some space") from None


def _replace_folder(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder in ``target``'s place (an earlier run's folder is removed)."""
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, old / target.name)
        os.replace(staging, target)
    except OSError as exc:
        raise CitysegError(f"cannot write {target}: {exc.strerror or exc}; choose another video name") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


class _VideoFile:
    """An H.264 video being written with PyAV: ``with _VideoFile(path, drive) as video: video.write(photo)``."""

    def __init__(self, path: Path, drive: Drive, shown_as: Path):
        self.path, self.drive, self.shown_as = path, drive, shown_as
        self.container = None
        self.stream = None
        self.frames = 0

    def __enter__(self) -> _VideoFile:
        import av

        options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}
        try:
            self.container = av.open(str(self.path), mode="w", options=options)
            stream = self.container.add_stream(ENCODER, rate=Fraction(self.drive.fps), options=dict(ENCODER_OPTIONS))
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._close_quietly()
            raise CitysegError(f"cannot write {self.shown_as}: {first_line(exc)}") from None
        stream.height, stream.width = self.drive.size
        stream.pix_fmt = "yuv420p"
        self.stream = stream
        return self

    def write(self, photo: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo), format="rgb24")
        frame.pts = self.frames
        try:
            for packet in self.stream.encode(frame):  # PyAV converts RGB to the stream's yuv420p
                self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise CitysegError(f"cannot write {self.shown_as}: {first_line(exc)}; check free space") from None
        self.frames += 1

    def __exit__(self, kind, exc, traceback) -> None:
        import av

        if kind is not None:
            self._close_quietly()
            return
        try:
            for packet in self.stream.encode():  # flush the frames the encoder holds
                self.container.mux(packet)
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            self._close_quietly()
            raise CitysegError(f"cannot write {self.shown_as}: {first_line(exc)}; check free space") from None

    def _close_quietly(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):  # the file is thrown away: its closing errors say nothing new
                self.container.close()
            self.container = None
