"""``POST /predict/video``: a video in, its segmented overlay (MP4) out, through the video pipeline.

The upload (at most ``max_upload_bytes``) goes to a temporary folder; its header is checked against the
limits (frame size as for photos, at most ``max_video_seconds`` long) before any frame is decoded; then
:func:`cityseg.video.predict_video` segments it there, as ``cityseg predict`` does a video, with every
frame's forward pass queued on the server's one inference thread (first in, first out with the photos,
so a video cannot starve them, and the model is never run from two threads). The answer is the overlay
(H.264 where the FFmpeg build has it: every browser plays it) with the summary in ``X-`` headers; the
temporary folder is gone before the answer leaves. One video is segmented at a time: a second one meanwhile
gets 503, as a full queue does.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from cityseg.engine import Segmenter
from cityseg.errors import CitysegError, first_line
from cityseg.serve.memory import release_memory
from cityseg.serve.settings import RequestError
from cityseg.serve.upload import UPLOAD_KINDS, read_upload
from cityseg.serve.worker import Admission, InferenceWorker
from cityseg.video import VideoOptions

VIDEO_ROUTE = "/predict/video"
UPLOAD_NAME = "upload"  # the upload's name in its temporary folder; messages say "the upload" instead


class WorkerBackend:
    """A backend that hands each frame to the server's inference thread: the served model, one thread, FIFO.

    The worker's forward pass is the served :class:`Segmenter`'s (flip and scales included), so the
    Segmenter built over this backend for a video adds none of its own.
    """

    def __init__(self, worker: InferenceWorker, name: str, needs_torch: bool = True):
        self.worker, self.name = worker, name
        self.needs_torch = needs_torch  # the served backend's: without torch, the video's steps around it stay so

    def __str__(self) -> str:
        return self.name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        futures = [self.worker.submit(image) for image in batch]
        return np.stack([future.result().logits for future in futures])


def add_video_route(app: FastAPI, served, error_responses: dict) -> None:
    """``POST /predict/video`` on ``app`` for ``served`` (a :class:`cityseg.serve.app.ServedModel`)."""
    one_video = Admission(1)
    segmenter = Segmenter(
        WorkerBackend(served.worker, str(served.segmenter.backend), not served.torch_free),
        served.info,
        served.segmenter.model_dir,
    )

    @app.post(
        VIDEO_ROUTE,
        summary="segment a video",
        description=(
            "The body is the video (MP4, WebM, MKV, MOV, AVI: anything FFmpeg reads) as raw bytes, or a multipart "
            "form with one file; at most the upload limit and `max_video_seconds` long. Returns the overlay "
            "video (MP4, H.264 where the server has it): the class colours over every frame with a legend, at "
            "the video's frame rate and size. `X-Frames`, `X-Video-Seconds`, `X-Frames-Per-Second`, "
            "`X-Realtime-Factor`, `X-Codec` and `X-Latency-Ms` headers say what was done. One video at a time."
        ),
        response_class=Response,
        responses={
            200: {"description": "the overlay video", "content": {"video/mp4": {"schema": {"type": "string"}}}},
            **error_responses,
        },
        openapi_extra={"requestBody": _video_body()},
    )
    async def predict_video_route(
        request: Request,
        every: int = Query(1, ge=1, le=30, description="segment one frame in N, holding its labels in between"),
        smooth: float = Query(0.0, ge=0, le=1, description="probability smoothing weight of the newest frame (0: off)"),
    ) -> Response:
        if not one_video.try_enter():
            raise RequestError(503, "busy", "a video is being segmented; retry when it is done", {"Retry-After": "5"})
        if not served.admission.try_enter():
            one_video.leave()
            raise RequestError(503, "busy", "the server is busy; retry in a moment", {"Retry-After": "1"})
        try:
            folder = Path(tempfile.mkdtemp(prefix="cityseg-video-"))
        except OSError as exc:
            served.admission.leave()
            one_video.leave()
            raise RequestError(500, "video_failed", f"no room for the upload: {exc.strerror or exc}") from None
        try:
            data = await read_upload(request, served.settings.max_upload_bytes, kind="video")
            started = time.perf_counter()
            path = folder / UPLOAD_NAME
            await run_in_threadpool(_write_upload, data, path)
            video = VideoOptions(every=every, smooth=smooth or None)
            overlay, summary = await run_in_threadpool(_segment, segmenter, served.settings, path, video)
        finally:
            await run_in_threadpool(shutil.rmtree, folder, True)
            await run_in_threadpool(release_memory)
            served.admission.leave()
            one_video.leave()
        latency_ms = 1000 * (time.perf_counter() - started)
        headers = {
            "X-Frames": str(summary.frames),
            "X-Video-Seconds": f"{summary.video_s:.2f}",
            "X-Frames-Per-Second": f"{summary.frames_per_s:.1f}",
            "X-Realtime-Factor": f"{summary.realtime_factor:.2f}",
            "X-Codec": summary.codec,
            "X-Latency-Ms": f"{latency_ms:.1f}",
            "Content-Disposition": 'inline; filename="overlay.mp4"',
        }
        return Response(overlay, media_type="video/mp4", headers=headers)


def _video_body() -> dict:
    media = ("video/mp4", "video/webm", "video/quicktime", "video/x-matroska", "application/octet-stream")
    return {
        "required": True,
        "content": {
            **{name: {"schema": {"type": "string", "format": "binary"}} for name in media},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
            },
        },
    }


def _write_upload(data: bytes, path: Path) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise RequestError(500, "video_failed", f"no room for the upload: {exc.strerror or exc}") from None


def _segment(segmenter: Segmenter, settings, path: Path, video: VideoOptions):
    """Check the upload at ``path`` against the limits and segment it beside it; (overlay bytes, VideoSummary)."""
    from cityseg.video import VideoCutShortError, VideoTooLongError, open_video, predict_video

    folder = path.parent
    try:
        container, _, info = open_video(path)
        container.close()
        video = replace(video, max_frames=_check_limits(info, settings))
        summary = predict_video(segmenter, path, folder / "out", video, stem=UPLOAD_NAME)
    except RequestError:
        raise
    except VideoTooLongError:
        raise RequestError(413, "video_too_long", _too_long(settings)) from None
    except VideoCutShortError as exc:
        raise RequestError(400, "corrupt_video", _named(exc, path)) from None
    except CitysegError as exc:
        if str(path) not in str(exc):  # about the output, e.g. a full disk: the server's fault, not the video's
            raise RequestError(500, "video_failed", str(exc).replace(str(folder), "a temporary folder")) from None
        raise RequestError(400, "bad_video", f"{_named(exc, path)}; {UPLOAD_KINDS['video'][1]}") from None
    except Exception as exc:  # e.g. the model failing on a frame: the request gets a 500, the server goes on
        raise RequestError(500, "video_failed", f"segmenting the video failed: {first_line(exc)}") from None
    return summary.overlay.read_bytes(), summary


def _check_limits(info, settings) -> int:
    """The most frames the video may have; refuses one whose header says it is too large or too long."""
    width, height = info.width, info.height
    if width * height > settings.max_pixels or max(width, height) > settings.max_side:
        raise RequestError(
            413,
            "video_too_large",
            f"the video's frames are {width}x{height} pixels, over this server's limit of "
            f"{settings.max_pixels / 1e6:g} megapixels and {settings.max_side} pixels a side; downscale it",
        )
    seconds = info.duration_s or (info.expected_frames or 0) / float(info.fps)
    if seconds > settings.max_video_seconds:
        raise RequestError(413, "video_too_long", f"the video is {seconds:.1f} s long; {_too_long(settings)}")
    return math.ceil(settings.max_video_seconds * float(info.fps)) + 1  # a header may understate: the frames decide


def _too_long(settings) -> str:
    return f"this server segments videos of up to {settings.max_video_seconds:g} s; send a shorter one"


def _named(exc: Exception, path: Path) -> str:
    """The error's message with the temporary file's path said as "the upload"."""
    return str(exc).replace(str(path), "the upload")
