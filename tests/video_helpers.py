"""Tiny videos for the video tests, made with PyAV: a slowly panning street, noise, and reading one back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HEIGHT, WIDTH, FRAMES, FPS = 64, 96, 8, 12


def street_frames(count: int = FRAMES, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> list[np.ndarray]:
    """A still 'street' (sky, buildings, road bands with texture) panning slowly: labels barely change."""
    rng = np.random.default_rng(seed)
    base = np.zeros((height, width + count * 2, 3), dtype=np.uint8)
    base[: height // 3] = (120, 160, 220)
    base[height // 3 : 2 * height // 3] = rng.integers(60, 140, (1, base.shape[1], 3), dtype=np.uint8)
    base[2 * height // 3 :] = (90, 90, 95)
    base = np.clip(base + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(base[:, 2 * i : 2 * i + width]) for i in range(count)]


def noise_frames(count: int = FRAMES, seed: int = 1) -> list[np.ndarray]:
    """Every frame fresh noise: the labels of a random network jump around from frame to frame."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = FPS,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    rotation: int = 0,
    frame_times: list[int] | None = None,
) -> Path:
    """Encode RGB frames with PyAV; ``frame_times`` (milliseconds) makes a variable frame rate."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        if frame_times is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if frame_times is not None:
                frame.pts, frame.time_base = frame_times[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], Fraction, tuple[int, int]]:
    """(RGB frames, average rate, (width, height)) of a video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.average_rate, (stream.codec_context.width, stream.codec_context.height)
