"""The application: the page, ``/predict``, ``/predict/video``, ``/health``, ``/classes`` over a :class:`Segmenter`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cityseg.engine import Segmenter, preprocess
from cityseg.errors import CitysegError, first_line
from cityseg.images import Photo
from cityseg.outputs import ids_encoder
from cityseg.serve.schemas import ClassesBody, ClassInfo, ClassShare, ErrorBody, HealthBody, PredictionBody, Timing
from cityseg.serve.settings import RequestError, ServeSettings
from cityseg.serve.upload import decode_upload, read_upload
from cityseg.serve.video import add_video_route
from cityseg.serve.worker import Admission, Inference, InferenceWorker

STATIC_PAGE = "static/index.html"  # package data: the page served at /


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
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
        },
    },
}


@dataclass
class ServedModel:
    """What every route of one app shares: the model, its limits, the worker that runs it and the admission."""

    segmenter: Segmenter
    settings: ServeSettings
    name: str | None = None

    def __post_init__(self) -> None:
        info, classes = self.segmenter.info, self.segmenter.class_set
        self.info = info
        self.target = (int(info.input_size[0]), int(info.input_size[1]))
        # a backend without torch (ONNX Runtime) keeps torch off the request path too, as cityseg predict does:
        # importing it on the first request cost that request 4.5 s (found by the soak benchmark)
        self.torch_free = self.segmenter.torch_free
        self.labels_at_size = self.segmenter.label_resizer
        self.worker = InferenceWorker(self.segmenter.logits, self.settings.max_batch)
        self.admission = Admission(self.settings.queue_size)
        self.backend = getattr(self.segmenter.backend, "name", type(self.segmenter.backend).__name__)
        self.class_table = [
            ClassInfo(index=i, name=n, color=tuple(c), label_id=int(lid))
            for i, (n, c, lid) in enumerate(zip(classes.names, classes.colors, classes.class_to_id, strict=True))
        ]


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

    served = ServedModel(segmenter, settings or ServeSettings(), name)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await run_in_threadpool(served.worker.close)  # let queued images finish

    app = FastAPI(
        title="cityseg",
        version=__version__,
        description="Semantic segmentation of street photos. POST an image to /predict; the page at / does it for you.",
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.worker, app.state.admission, app.state.settings = served.worker, served.admission, served.settings
    _add_error_handlers(app)
    if served.settings.token:
        _require_token(app, served.settings.token)
    _add_info_routes(app, served)
    _add_predict_route(app, served)
    add_video_route(app, served, ERROR_RESPONSES)
    return app


def refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is refused (422), not ignored: a misspelt ``?fromat=json``
    would otherwise answer a PNG with no word of why."""
    route = request.scope.get("route")
    if route is None or not getattr(route, "include_in_schema", False):
        return  # the page and the icon: a browser may add what it likes
    known = {param.alias for param in route.dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        names = ", ".join(repr(name) for name in unknown)
        raise RequestError(422, "invalid_parameter", f"unknown query parameter {names} for {request.url.path}; {takes}")


def _require_token(app: FastAPI, token: str) -> None:
    """Every route but the page answers 401 without ``Authorization: Bearer <token>``; the schema says so."""
    from cityseg.serve.auth import OPEN_PATHS, authorised

    def openapi_with_security() -> dict:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]  # every operation (the page is not in the schema)
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                operation.setdefault("responses", {})["401"] = {
                    "description": "no token, or a wrong one: send Authorization: Bearer TOKEN",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                }
        return app.openapi_schema

    app.openapi = openapi_with_security

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if request.url.path in OPEN_PATHS and request.method == "GET":
            return await call_next(request)
        if not authorised(request.headers.get("authorization"), token):
            return JSONResponse(
                {"error": "unauthorized", "message": "this server needs a token: send Authorization: Bearer TOKEN"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="cityseg"'},
            )
        return await call_next(request)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, the app's own and FastAPI's, as ``{"error": CODE, "message": ONE LINE}``."""

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


def _add_info_routes(app: FastAPI, served: ServedModel) -> None:
    """The page, and what the model is: ``/``, ``/health``, ``/classes``."""
    info = served.info

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    unknown_query = {422: {"model": ErrorBody, "description": "a query parameter the route does not take"}}

    @app.get("/health", response_model=HealthBody, summary="the server is up; model and queue", responses=unknown_query)
    def health() -> HealthBody:
        return HealthBody(
            status="ok",
            model=served.name or model_label(served.segmenter.model_dir),
            arch=info.arch,
            encoder=info.encoder,
            backend=served.backend,
            class_set=info.class_set_name,
            input_size=served.target,
            in_flight=served.admission.in_flight,
            queue_size=served.settings.queue_size,
            max_batch=served.settings.max_batch,
            served=served.worker.images,
        )

    @app.get(
        "/classes",
        response_model=ClassesBody,
        summary="the classes the model predicts: names, ids, colours",
        responses=unknown_query,
    )
    def list_classes() -> ClassesBody:
        return ClassesBody(class_set=info.class_set_name, classes=served.class_table)


ERROR_RESPONSES = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "empty body, not an image (a video), corrupt or truncated file, a form without a file, ids not available",
        413: "upload over the size limit, an image (video frame) over the pixel limit, a video over the length limit",
        415: "a content type that is not an image (a video) or a multipart form",
        422: "a bad query parameter, or one the route does not take",
        503: "the server is busy (queue full); retry after Retry-After seconds",
    }.items()
}


def _add_predict_route(app: FastAPI, served: ServedModel) -> None:
    """``POST /predict``: admission, then :func:`_segment_upload`."""

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
            **ERROR_RESPONSES,
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
            to_ids, suffix = ids_encoder(served.info, ids)
        except CitysegError as exc:
            raise RequestError(400, "unsupported_ids", str(exc)) from None
        if not served.admission.try_enter():
            raise RequestError(
                503,
                "busy",
                f"the server is busy ({served.settings.queue_size} requests in flight); retry in a moment",
                headers={"Retry-After": "1"},
            )
        try:
            return await _segment_upload(request, served, output, to_ids, suffix)
        finally:
            served.admission.leave()


async def _segment_upload(
    request: Request, served: ServedModel, output: str, to_ids: Callable[[np.ndarray], np.ndarray], suffix: str
) -> Response:
    """Read, decode, queue for the model, resize back, answer: the steps of one admitted ``/predict``."""
    data = await read_upload(request, served.settings.max_upload_bytes)
    started = time.perf_counter()
    photo, image = await run_in_threadpool(_prepare, data, served)
    decoded = time.perf_counter()
    try:
        result: Inference = await asyncio.wrap_future(served.worker.submit(image))
    except Exception as exc:
        raise RequestError(500, "inference_failed", f"the model failed on this image: {first_line(exc)}") from None
    inferred = time.perf_counter()
    labels = await run_in_threadpool(served.labels_at_size, result.logits, photo.size)  # (H, W) uint8
    resized = time.perf_counter()
    timing = Timing(
        decode=1000 * (decoded - started),
        queue=1000 * result.queue_s,
        model=1000 * result.model_s,
        resize=1000 * (resized - inferred),
    )
    if output == "json":
        latency_ms = 1000 * (resized - started)
        body = _summary(labels, served, timing, latency_ms, result)
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


def _prepare(data: bytes, served: ServedModel) -> tuple[Photo, np.ndarray]:
    photo = decode_upload(data, served.target, served.settings)
    return photo, preprocess(photo.image, served.info, served.torch_free)  # (3, h, w) float32


def _encode_png(to_ids: Callable[[np.ndarray], np.ndarray], labels: np.ndarray) -> bytes:
    """(H, W) class indices as a one-channel PNG of the ids asked for; fast zlib (label maps are flat runs)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(to_ids(labels), dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _summary(
    labels: np.ndarray, served: ServedModel, timing: Timing, latency_ms: float, result: Inference
) -> PredictionBody:
    """The JSON answer: every class present with its pixels and share, largest first, and the timings."""
    class_table = served.class_table
    counts = np.bincount(labels.ravel(), minlength=len(class_table))
    total = max(1, labels.size)
    present = sorted((int(i) for i in np.flatnonzero(counts[: len(class_table)])), key=lambda i: -counts[i])
    return PredictionBody(
        width=labels.shape[1],
        height=labels.shape[0],
        latency_ms=round(latency_ms, 2),
        timing_ms=Timing(**{key: round(value, 2) for key, value in timing.model_dump().items()}),
        batch_size=result.batch_size,
        backend=served.backend,
        class_set=served.info.class_set_name,
        classes=[
            ClassShare(**class_table[i].model_dump(), pixels=int(counts[i]), share=float(counts[i]) / total)
            for i in present
        ],
    )
