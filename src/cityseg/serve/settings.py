"""The limits of one server, and the error a refused request raises."""

from __future__ import annotations

from dataclasses import dataclass

from cityseg.defaults import MAX_BATCH, MAX_MEGAPIXELS, MAX_SIDE, MAX_UPLOAD_MB, MAX_VIDEO_SECONDS, QUEUE_SIZE
from cityseg.errors import CitysegError

# ---- settings and errors ------------------------------------------------------------------------


@dataclass
class ServeSettings:
    """Limits of one server.

    Args:
        max_upload_bytes: largest request body; a larger upload gets 413 before it is read.
        max_pixels: largest image area (width x height); checked from the header, before decoding.
        max_side: longest side in pixels.
        queue_size: requests in flight at once (each holds at most one upload and one decoded photo).
        max_batch: images one forward pass may take from the queue.
        max_video_seconds: longest video ``POST /predict/video`` takes (its frames: at most ``max_pixels`` and
            ``max_side``, its file: ``max_upload_bytes``); one video is segmented at a time.
        token: the bearer token every request but the page needs (None: an open server; see
            :mod:`cityseg.serve.auth`).
    """

    max_upload_bytes: int = int(MAX_UPLOAD_MB * 2**20)
    max_pixels: int = int(MAX_MEGAPIXELS * 1e6)
    max_side: int = MAX_SIDE
    queue_size: int = QUEUE_SIZE
    max_batch: int = MAX_BATCH
    token: str | None = None
    max_video_seconds: float = MAX_VIDEO_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_side", "queue_size", "max_batch"):
            if getattr(self, name) < 1:
                raise CitysegError(f"serve setting {name} must be at least 1, not {getattr(self, name)}")
        if not self.max_video_seconds > 0:
            raise CitysegError(f"serve setting max_video_seconds must be above 0, not {self.max_video_seconds}")


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a short ``code`` and a one-line ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def mib(size: float) -> str:
    """A size in bytes as MiB with one decimal, for messages."""
    return f"{size / 2**20:.1f} MiB"
