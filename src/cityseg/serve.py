"""Serving: a web page and an HTTP API over a trained model (``cityseg serve MODEL``).

One ``POST /predict`` goes through these steps::

    admission        at most ``queue_size`` requests in flight; the next one gets 503 at once, so memory stays bounded
    read_upload      the body (raw image bytes or a multipart form), at most ``max_upload_bytes`` (413 past it)
    decode_upload    PIL, formats whitelisted; the header's size is checked (413) before any pixel is decoded
    preprocess       the model's input (3, h, w), in the thread pool
    InferenceWorker  one thread owns the model; a FIFO queue; each forward pass takes up to ``max_batch`` waiting images
    labels_at_size   logits back to the photo's own size, in the thread pool
    response         the class ids as a PNG, or (``?format=json``) the class shares and the latency

Decoding and resizing run in parallel threads; the model runs in one, so requests cannot starve each other
(first in, first out) and the model's memory is that of one batch. Every bad request gets a 4xx JSON body
``{"error": CODE, "message": ONE LINE}`` and the server goes on serving.

Other routes: ``GET /`` (the page, ``static/index.html``: inline JS/CSS, nothing fetched from the internet),
``GET /health``, ``GET /classes`` and ``GET /openapi.json`` (the API's OpenAPI schema). Swagger's ``/docs``
is switched off: it loads its JavaScript from a CDN.

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> app = create_app(Segmenter.from_pretrained("runs/latest"))  # doctest: +SKIP
    >>> TestClient(app).post("/predict?format=json", content=open("street.jpg", "rb").read()).json()  # doctest: +SKIP
    {'width': 2048, 'height': 1024, 'latency_ms': 183.0, 'classes': [{'name': 'road', 'share': 0.38, ...}, ...], ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from cityseg.errors import CitysegError
from cityseg.predict import Photo, Segmenter, label_writer, labels_at_size, preprocess

MAX_UPLOAD_MB = 20.0  # largest request body, in MiB
MAX_MEGAPIXELS = 40.0  # largest image, width x height in millions of pixels (a 7700x5200 photo)
MAX_SIDE = 10_000  # longest side in pixels, whatever the area
QUEUE_SIZE = 16  # requests in flight (reading, decoding, waiting or running); the next one gets 503
MAX_BATCH = 4  # images one forward pass may take from the queue
DEFAULT_HOST = "127.0.0.1"  # loopback: reachable from this machine only, unless --host says otherwise
DEFAULT_PORT = 8000

# What Image.open may try: common photo formats only, none that hands the file to an external program.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
RAW_MEDIA_TYPES = ("application/octet-stream", "")  # besides image/*: bytes whose type the client did not know
HOW_TO_SEND = (
    "send the photo's bytes with Content-Type image/jpeg (or image/png ...), "
    "e.g. curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' URL/predict, "
    "or a multipart form: -F file=@photo.jpg"
)
STATIC_PAGE = "static/index.html"  # package data: the page served at /


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
    """

    max_upload_bytes: int = int(MAX_UPLOAD_MB * 2**20)
    max_pixels: int = int(MAX_MEGAPIXELS * 1e6)
    max_side: int = MAX_SIDE
    queue_size: int = QUEUE_SIZE
    max_batch: int = MAX_BATCH

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_side", "queue_size", "max_batch"):
            if getattr(self, name) < 1:
                raise CitysegError(f"serve setting {name} must be at least 1, not {getattr(self, name)}")


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a short ``code`` and a one-line ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"


# ---- the API's JSON bodies (they make the OpenAPI schema) -----------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="short machine-readable code, e.g. not_an_image, upload_too_large, busy")
    message: str = Field(description="one line: what is wrong and what to do")


class ClassInfo(BaseModel):
    index: int = Field(description="class index: the value in the label PNG with ids=classes")
    name: str
    color: tuple[int, int, int] = Field(description="RGB colour of the class")
    label_id: int = Field(description="official Cityscapes label id of the class")


class ClassesBody(BaseModel):
    class_set: str = Field(description="train19, categories, labelids or kmeans")
    classes: list[ClassInfo]


class ClassShare(ClassInfo):
    pixels: int
    share: float = Field(description="fraction of the image's pixels, 0..1")


class Timing(BaseModel):
    decode: float = Field(description="decoding and preprocessing, ms")
    queue: float = Field(description="waiting for the model, ms")
    model: float = Field(description="the forward pass of the batch the image was in, ms")
    resize: float = Field(description="logits back to the photo's size and argmax, ms")


class PredictionBody(BaseModel):
    width: int
    height: int
    latency_ms: float = Field(description="server time from the received upload to the finished result")
    timing_ms: Timing
    batch_size: int = Field(description="images that shared the forward pass")
    backend: str
    class_set: str
    classes: list[ClassShare] = Field(description="the classes present, largest share first")


class HealthBody(BaseModel):
    status: Literal["ok"]
    model: str
    arch: str
    encoder: str
    backend: str
    class_set: str
    input_size: tuple[int, int]
    in_flight: int = Field(description="requests being served now")
    queue_size: int = Field(description="requests in flight allowed before 503")
    max_batch: int
    served: int = Field(description="images segmented since start")


# ---- reading an upload ----------------------------------------------------------------------------


async def read_upload(request: Request, limit: int) -> bytes:
    """The image bytes of a request: its raw body, or the one file of a multipart form.

    Raises:
        RequestError: 413 for a body over ``limit`` (refused from Content-Length before reading when it is
            given), 415 for a content type that is not an image, 400 for a form without a file.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = media_type == "multipart/form-data"
    if not (is_form or media_type.startswith("image/") or media_type in RAW_MEDIA_TYPES):
        raise RequestError(415, "unsupported_media_type", f"content type {media_type} is not an image; {HOW_TO_SEND}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "upload_too_large", _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "upload_too_large", _too_large(size, limit, at_least=True))
        chunks.append(chunk)
    body = b"".join(chunks)
    return await _form_file(request, body) if is_form else body


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    amount = f"over {_mib(size)}" if at_least else _mib(size)
    return f"the upload is {amount}, over this server's limit of {_mib(limit)}; send a smaller or more compressed photo"


async def _form_file(request: Request, body: bytes) -> bytes:
    """The file in a multipart body already read (the body is replayed to Starlette's form parser)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        message = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise RequestError(400, "bad_form", f"cannot read the multipart form ({message}); {HOW_TO_SEND}") from None
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise RequestError(400, "no_file", f"the multipart form holds no file; {HOW_TO_SEND}")
        return await uploads[0].read()
    finally:
        await form.close()


def decode_upload(data: bytes, target_size: tuple[int, int], settings: ServeSettings) -> Photo:
    """Decode uploaded bytes as an upright RGB photo, reduced towards ``target_size`` but knowing its own size.

    The size in the header is checked against the limits before any pixel is decoded; JPEGs are decoded at a
    reduced scale (DCT scaling) when the model needs far fewer pixels, as ``cityseg predict`` does.

    Raises:
        RequestError: 400 for an empty body, not an image, a corrupt or truncated file; 413 for too many pixels.
    """
    if not data:
        raise RequestError(400, "empty_body", f"the request holds no image (0 bytes); {HOW_TO_SEND}")
    try:
        pil = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise RequestError(
            400, "not_an_image", f"the upload is not an image this server reads ({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Image.DecompressionBombError:
        raise RequestError(
            413, "image_too_large", "the image has too many pixels to decode safely; downscale it"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(
            400, "corrupt_image", f"cannot open the image ({_first_line(exc)}); send the complete file"
        ) from None
    with pil:
        width, height = pil.size
        if width * height > settings.max_pixels or max(width, height) > settings.max_side:
            raise RequestError(
                413,
                "image_too_large",
                f"the image is {width}x{height} pixels, over this server's limit of {settings.max_pixels / 1e6:g} "
                f"megapixels and {settings.max_side} pixels a side; downscale it",
            )
        if _exif_orientation(pil) in (5, 6, 7, 8):  # turned by 90 degrees: the upright photo is height x width
            width, height = height, width
        if pil.format == "JPEG":
            side = 2 * max(target_size)  # keep twice the model's size on both sides, whatever the orientation
            pil.draft(None, (side, side))
        try:
            pil.load()
            try:
                upright = ImageOps.exif_transpose(pil)
            except (OSError, SyntaxError, ValueError):  # a broken EXIF block should not stop a readable photo
                upright = pil
            rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise RequestError(
                400, "corrupt_image", f"the image is corrupt or truncated ({_first_line(exc)}); send the complete file"
            ) from None
    factor = min(rgb.width // (2 * target_size[1]), rgb.height // (2 * target_size[0]))
    if factor >= 2:  # a cheap box filter down to twice the model's size; preprocess does the final resize
        rgb = rgb.reduce(factor)
    return Photo(rgb, (height, width), "upload")


def _exif_orientation(pil: Image.Image) -> int:
    try:
        return int(pil.getexif().get(0x0112, 1))
    except Exception:  # unreadable EXIF: treat the photo as upright
        return 1


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


# ---- one model, one thread ------------------------------------------------------------------------


@dataclass
class Inference:
    """The worker's answer for one image."""

    logits: np.ndarray  # (C, h, w)
    queue_s: float  # from submit() to the start of its forward pass
    model_s: float  # the forward pass of its batch
    batch_size: int  # images in that batch


class InferenceWorker:
    """One thread that owns the model and runs it on a FIFO queue of preprocessed images.

    Each forward pass takes the oldest waiting image and up to ``max_batch - 1`` more that are already
    waiting (it never waits to fill a batch). The queue itself is unbounded: the server's admission limit
    bounds how many images can be in it.

    Args:
        run: (B, 3, h, w) float32 -> (B, C, h, w) logits, e.g. ``Segmenter.logits``.
        max_batch: images per forward pass.

    Example:
        >>> worker = InferenceWorker(segmenter.logits)  # doctest: +SKIP
        >>> worker.submit(preprocess(photo, info)).result().logits.shape  # doctest: +SKIP
        (19, 256, 256)
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH):
        self.run = run
        self.max_batch = max_batch
        self.images = 0  # segmented so far
        self.batches = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # (image, future, submitted) or None to stop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one (3, h, w) float32 image; the future gives its :class:`Inference`."""
        future: Future = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cityseg-inference", daemon=True)
                self._thread.start()
            self._jobs.put((image, future, time.perf_counter()))
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Finish the images already queued, then stop the thread (a later submit starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(None)
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch, stop = [job], False
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list) -> None:
        jobs = [job for job in batch if job[1].set_running_or_notify_cancel()]  # drop requests given up on
        if not jobs:
            return
        started = time.perf_counter()
        try:
            logits = self.run(np.stack([image for image, _, _ in jobs]))  # (B, 3, h, w) -> (B, C, h, w)
        except BaseException as exc:  # the thread must survive a failing batch; the requests get a 500
            for _, future, _ in jobs:
                future.set_exception(exc)
            return
        model_s = time.perf_counter() - started
        self.images += len(jobs)
        self.batches += 1
        for scores, (_, future, submitted) in zip(logits, jobs, strict=True):
            future.set_result(Inference(scores, started - submitted, model_s, len(jobs)))


class Admission:
    """A counter of requests in flight that refuses, rather than queues, the one past ``capacity``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_flight = 0
        self._lock = threading.Lock()  # TestClient runs each client's event loop in its own thread

    def try_enter(self) -> bool:
        with self._lock:
            if self.in_flight >= self.capacity:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


# ---- the application ------------------------------------------------------------------------------


def page_html() -> str:
    """The page served at ``/`` (package data ``cityseg/static/index.html``)."""
    return resources.files("cityseg").joinpath(STATIC_PAGE).read_text(encoding="utf-8")


def model_label(model_dir: Path | None) -> str:
    """A short name for the model: its folder, with the run folder's name when the folder is ``model``."""
    if model_dir is None:
        return "model"
    path = Path(model_dir).resolve()  # runs/latest/model -> the run's own name
    return f"{path.parent.name}/{path.name}" if path.name == "model" and path.parent.name else path.name


PREDICT_BODY = {  # the request body as the OpenAPI schema shows it (the handler reads the raw stream itself)
    "required": True,
    "content": {
        **{
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in ("image/jpeg", "image/png", "image/webp", "application/octet-stream")
        },
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}},
        },
    },
}


def create_app(segmenter: Segmenter, settings: ServeSettings | None = None, name: str | None = None) -> FastAPI:
    """The FastAPI application serving ``segmenter``: the page, ``/predict``, ``/health``, ``/classes``.

    Args:
        segmenter: the loaded model (any backend).
        settings: limits (upload size, image size, requests in flight, batch).
        name: the model's name in ``/health`` and on the page (default: its folder's name).

    Returns:
        The app; run it with uvicorn (see :func:`serve`) or call it in-process with ``fastapi.testclient``.
    """
    from cityseg import __version__

    settings = settings or ServeSettings()
    info = segmenter.info
    classes = segmenter.class_set
    target = (int(info.input_size[0]), int(info.input_size[1]))
    worker = InferenceWorker(segmenter.logits, settings.max_batch)
    admission = Admission(settings.queue_size)
    backend = getattr(segmenter.backend, "name", type(segmenter.backend).__name__)
    class_table = [
        ClassInfo(index=i, name=n, color=tuple(c), label_id=int(lid))
        for i, (n, c, lid) in enumerate(zip(classes.names, classes.colors, classes.class_to_id, strict=True))
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await run_in_threadpool(worker.close)  # let queued images finish

    app = FastAPI(
        title="cityseg",
        version=__version__,
        description="Semantic segmentation of street photos. POST an image to /predict; the page at / does it for you.",
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.worker, app.state.admission, app.state.settings = worker, admission, settings

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: f"no route {request.url.path}; see /openapi.json"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error": codes.get(exc.status_code, f"http_{exc.status_code}"), "message": message},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "invalid_parameter", "message": problems}, 422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health", response_model=HealthBody, summary="the server is up; model and queue")
    def health() -> HealthBody:
        return HealthBody(
            status="ok",
            model=name or model_label(segmenter.model_dir),
            arch=info.arch,
            encoder=info.encoder,
            backend=backend,
            class_set=info.class_set,
            input_size=target,
            in_flight=admission.in_flight,
            queue_size=settings.queue_size,
            max_batch=settings.max_batch,
            served=worker.images,
        )

    @app.get("/classes", response_model=ClassesBody, summary="the classes the model predicts: names, ids, colours")
    def list_classes() -> ClassesBody:
        return ClassesBody(class_set=info.class_set, classes=class_table)

    error_responses = {
        status: {"model": ErrorBody, "description": description}
        for status, description in {
            400: "empty body, not an image, corrupt or truncated image, a form without a file, ids not available",
            413: "upload over the size limit, or an image over the pixel limit",
            415: "a content type that is not an image or a multipart form",
            422: "a bad query parameter",
            503: "the server is busy (queue full); retry after Retry-After seconds",
        }.items()
    }

    @app.post(
        "/predict",
        summary="segment one photo",
        description=(
            "The body is the image (JPEG, PNG, WebP, BMP, TIFF or GIF) as raw bytes, or a multipart form with "
            "one file. Returns the class ids at the photo's own size as a one-channel PNG (values: `ids`), "
            "or with `format=json` the share of each class present and the latency. The PNG response carries "
            "`X-Latency-Ms`, `X-Ids` and `Server-Timing` headers."
        ),
        response_model=None,
        responses={
            200: {
                "model": PredictionBody,
                "description": "label PNG (format=png) or class shares (format=json)",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **error_responses,
        },
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(
        request: Request,
        output: Literal["png", "json"] = Query("png", alias="format", description="png: label ids; json: shares"),
        ids: Literal["classes", "trainids", "labelids"] = Query(
            "classes",
            description="values of the PNG: class indices (train ids for a train19 model), Cityscapes train ids "
            "or official label ids, as `cityseg predict --ids`",
        ),
    ) -> Response:
        try:
            to_ids, suffix = label_writer(info, ids)
        except CitysegError as exc:
            raise RequestError(400, "unsupported_ids", str(exc)) from None
        if not admission.try_enter():
            raise RequestError(
                503,
                "busy",
                f"the server is busy ({settings.queue_size} requests in flight); retry in a moment",
                headers={"Retry-After": "1"},
            )
        try:
            data = await read_upload(request, settings.max_upload_bytes)
            started = time.perf_counter()
            photo, image = await run_in_threadpool(_prepare, data, target, settings, info)
            decoded = time.perf_counter()
            try:
                result: Inference = await asyncio.wrap_future(worker.submit(image))
            except Exception as exc:
                raise RequestError(
                    500, "inference_failed", f"the model failed on this image: {_first_line(exc)}"
                ) from None
            inferred = time.perf_counter()
            labels = await run_in_threadpool(labels_at_size, result.logits, photo.size)  # (H, W) uint8
            resized = time.perf_counter()
            timing = Timing(
                decode=1000 * (decoded - started),
                queue=1000 * result.queue_s,
                model=1000 * result.model_s,
                resize=1000 * (resized - inferred),
            )
            if output == "json":
                latency_ms = 1000 * (resized - started)
                body = _summary(labels, class_table, timing, latency_ms, result, backend, info.class_set)
                return JSONResponse(body.model_dump())
            png = await run_in_threadpool(_encode_png, to_ids, labels)
            latency_ms = 1000 * (time.perf_counter() - started)
            return Response(
                png,
                media_type="image/png",
                headers={
                    "X-Latency-Ms": f"{latency_ms:.1f}",
                    "X-Ids": suffix,
                    "X-Batch-Size": str(result.batch_size),
                    "Server-Timing": ", ".join(
                        [f"{key};dur={value:.1f}" for key, value in timing.model_dump().items()]
                        + [f"total;dur={latency_ms:.1f}"]
                    ),
                },
            )
        finally:
            admission.leave()

    return app


def _prepare(data: bytes, target: tuple[int, int], settings: ServeSettings, info) -> tuple[Photo, np.ndarray]:
    photo = decode_upload(data, target, settings)
    return photo, preprocess(photo.image, info)  # (3, h, w) float32


def _encode_png(to_ids: Callable[[np.ndarray], np.ndarray], labels: np.ndarray) -> bytes:
    """(H, W) class indices as a one-channel PNG of the ids asked for; fast zlib (label maps are flat runs)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(to_ids(labels), dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _summary(
    labels: np.ndarray,
    class_table: list[ClassInfo],
    timing: Timing,
    latency_ms: float,
    result: Inference,
    backend: str,
    class_set_name: str,
) -> PredictionBody:
    """The JSON answer: every class present with its pixels and share, largest first, and the timings."""
    counts = np.bincount(labels.ravel(), minlength=len(class_table))
    total = max(1, labels.size)
    present = sorted((int(i) for i in np.flatnonzero(counts[: len(class_table)])), key=lambda i: -counts[i])
    return PredictionBody(
        width=labels.shape[1],
        height=labels.shape[0],
        latency_ms=round(latency_ms, 2),
        timing_ms=Timing(**{key: round(value, 2) for key, value in timing.model_dump().items()}),
        batch_size=result.batch_size,
        backend=backend,
        class_set=class_set_name,
        classes=[
            ClassShare(**class_table[i].model_dump(), pixels=int(counts[i]), share=float(counts[i]) / total)
            for i in present
        ],
    )


# ---- running it -----------------------------------------------------------------------------------


def bind_socket(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), or a one-line error.

    Binding before the server starts turns "address in use" into a clear message, and lets a caller
    (a test, ``--port 0``) learn the port without a race.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CitysegError(f"cannot resolve --host {host}: {exc.strerror}; use an address like 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise CitysegError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class LocalServer:
    """A server ready to run: uvicorn's ``Server``, the socket it listens on, and its URL.

    ``run()`` blocks until ``stop()`` (from another thread) or Ctrl+C; run it in a thread to serve in the background.
    """

    server: object  # uvicorn.Server (uvicorn is imported lazily)
    socket: socket.socket
    url: str

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self.server.should_exit = True

    @property
    def started(self) -> bool:
        return bool(self.server.started)


def make_server(
    segmenter: Segmenter,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    settings: ServeSettings | None = None,
    log_level: str = "info",
) -> LocalServer:
    """Bind ``host:port`` and wrap :func:`create_app` in a uvicorn server (not started yet).

    Raises:
        CitysegError: the address cannot be listened on.
    """
    import uvicorn

    settings = settings or ServeSettings()
    app = create_app(segmenter, settings)
    sock = bind_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level=log_level,
        # bound open connections too: each may be uploading; /predict's own limit refuses the rest with 503
        limit_concurrency=4 * settings.queue_size + 64,
        timeout_graceful_shutdown=10,
    )
    return LocalServer(uvicorn.Server(config), sock, f"http://{shown_host}:{sock.getsockname()[1]}/")


def serve(
    model: str | os.PathLike | Segmenter,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    backend: str = "torch",
    onnx_file: str | os.PathLike | None = None,
    threads: int | None = None,
    settings: ServeSettings | None = None,
    log_level: str = "info",
) -> None:
    """Load a model and serve it until interrupted (Ctrl+C): the page at ``/``, the API beside it.

    Args:
        model: a model folder, run folder, ``runs/latest`` or a loaded :class:`Segmenter`.
        host: address to listen on (default loopback only).
        port: TCP port; 0 picks a free one (printed).
        backend: ``torch``, ``onnx`` or ``openvino`` (int8 when ``model.int8.onnx`` is there), as
            ``cityseg predict``.
        onnx_file: with ``backend="onnx"`` or ``"openvino"``, the ONNX file to run.
        threads: CPU threads for the model.
        settings: limits; see :class:`ServeSettings`.
        log_level: uvicorn's log level (``info`` logs every request).

    Raises:
        CitysegError: the model cannot be loaded, or the address cannot be listened on.
    """
    segmenter = model if isinstance(model, Segmenter) else Segmenter.from_pretrained(model, backend, onnx_file, threads)
    server = make_server(segmenter, host, port, settings, log_level)
    print(
        f"serving {model_label(segmenter.model_dir)} ({getattr(segmenter.backend, 'name', backend)}) at {server.url}  "
        "(API: POST /predict, GET /health, /classes, /openapi.json; Ctrl+C stops)",
        flush=True,
    )
    server.run()
