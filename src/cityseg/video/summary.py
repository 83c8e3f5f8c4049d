"""What segmenting a video did: frames, seconds, speed against real time, each stage's share, and flicker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cityseg.errors import CitysegError

STAGES = ("decode", "model", "encode")  # the pipeline's threads: decode (+ preprocess), model, encode (+ resize)
STAGE_NAMES = {"decode": "decode", "model": "model", "encode": "resize, overlay and encode"}


class FlickerMeter:
    """Counts how many pixels change class from each frame to the next.

    ``share`` is the mean over consecutive pairs of frames of the share of pixels whose class differs:
    0 for labels that never change, larger the more they flicker (a moving camera changes some anyway).

    Example:
        >>> meter = FlickerMeter()
        >>> for labels in ([[0, 0], [1, 1]], [[0, 1], [1, 1]], [[0, 1], [1, 1]]):
        ...     meter.update(np.array(labels, dtype=np.uint8))
        >>> meter.share  # 1 of 4 pixels changed, then none
        0.125
    """

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None
        self.changed = 0
        self.compared = 0  # pixels compared, over all pairs

    def update(self, labels: np.ndarray) -> None:
        if self.previous is not None and self.previous.shape == labels.shape:
            self.changed += int(np.count_nonzero(labels != self.previous))
            self.compared += labels.size
        self.previous = labels

    @property
    def share(self) -> float | None:
        """Mean share of pixels that changed class between consecutive frames; None before two frames."""
        return self.changed / self.compared if self.compared else None


@dataclass
class VideoSummary:
    """What :func:`cityseg.video.predict_video` did with one video.

    ``frames`` were read, segmented and written; ``wall_s`` is the whole run; ``stage_s`` the busy seconds
    of each thread (decode: demuxing, decoding, RGB conversion, preprocessing; model: the network and
    smoothing; encode: resizing the labels back, the overlay, the legend, encoding and the label PNGs). The stages
    overlap, so ``wall_s`` is about the slowest stage's time when the cores suffice, and their sum when not.
    """

    source: Path
    overlay: Path | None = None
    backend: str = ""
    codec: str = ""  # what encoded the overlay
    fps: float = 0.0  # the video's frame rate, kept in the overlay
    size: tuple[int, int] = (0, 0)  # (width, height) of the upright frames
    frames: int = 0
    segmented: int = 0  # frames the model ran on (every ``every``-th)
    every: int = 1
    smooth: float | None = None
    wall_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    flicker: float | None = None  # see FlickerMeter
    frame_dir: Path | None = None  # where the per-frame label PNGs went, if asked
    label_pngs: int = 0
    notes: list[str] = field(default_factory=list)
    failure: str | None = None  # why decoding stopped before the end (corrupt or truncated file)

    @property
    def video_s(self) -> float:
        """Seconds of video segmented."""
        return self.frames / self.fps if self.fps else 0.0

    @property
    def frames_per_s(self) -> float:
        """Frames processed per second of wall time, end to end."""
        return self.frames / self.wall_s if self.wall_s else 0.0

    @property
    def realtime_factor(self) -> float:
        """Processing speed over the video's own frame rate: 1 or more keeps up with the camera."""
        return self.frames_per_s / self.fps if self.fps else 0.0

    @property
    def stage_shares(self) -> dict[str, float]:
        """Each stage's share of the busy time of all stages (they sum to 1)."""
        total = sum(self.stage_s.values())
        return {stage: (seconds / total if total else 0.0) for stage, seconds in self.stage_s.items()}

    def __str__(self) -> str:
        width, height = self.size
        lines = [
            f"segmented {self.source} with {self.backend}: {self.frames} frames, {self.video_s:.1f} s of "
            f"{width}x{height} video at {self.fps:.4g} fps -> {self.overlay} ({self.codec})",
            f"speed: {self.frames_per_s:.1f} frames/s in {self.wall_s:.1f} s, {self.realtime_factor:.2f}x real time; "
            "busy time: "
            + ", ".join(f"{STAGE_NAMES[stage]} {100 * share:.0f}%" for stage, share in self.stage_shares.items()),
        ]
        if self.flicker is not None:
            lines.append(f"flicker: {100 * self.flicker:.2f}% of the pixels change class from one frame to the next")
        if self.every > 1:
            lines.append(f"the model ran on {self.segmented} frames (1 in {self.every}), labels held in between")
        if self.smooth:
            lines.append(f"smoothing: class probabilities averaged over frames, weight {self.smooth:g} for the newest")
        if self.frame_dir is not None:
            lines.append(f"label PNGs: {self.label_pngs} in {self.frame_dir}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


class VideoCutShortError(CitysegError):
    """A video that is corrupt or truncated part-way: the good frames were segmented and written first.

    ``summary`` is the :class:`VideoSummary` of what was written.
    """

    def __init__(self, message: str, summary: VideoSummary):
        super().__init__(message)
        self.summary = summary


class VideoTooLongError(CitysegError):
    """A video with more frames than the ``max_frames`` of :func:`cityseg.video.predict_video`; nothing was written."""
