"""Serving: a web page and an HTTP API over a trained model (``cityseg serve MODEL``).

One ``POST /predict`` goes through these steps::

    admission        at most ``queue_size`` requests in flight; the next one gets 503 at once, so memory stays bounded
    read_upload      the body (raw image bytes or a multipart form), at most ``max_upload_bytes`` (413 past it)
    decode_upload    images.decode_image, formats whitelisted; the header's size is checked (413) before decoding
    preprocess       the model's input (3, h, w), in the thread pool
    InferenceWorker  one thread owns the model; a FIFO queue; each forward pass takes up to ``max_batch`` waiting images
    labels_at_size   logits back to the photo's own size, in the thread pool
    response         the class ids as a PNG, or (``?format=json``) the class shares and the latency

Decoding and resizing run in parallel threads; the model runs in one, so requests cannot starve each other
(first in, first out) and the model's memory is that of one batch. Every bad request gets a 4xx JSON body
``{"error": CODE, "message": ONE LINE}`` and the server goes on serving.

The package: ``settings`` (limits, the refusal error), ``upload`` (reading and decoding the body),
``worker`` (the model's thread, admission), ``schemas`` (the JSON bodies), ``app`` (the routes) and
``server`` (uvicorn and ``cityseg serve``); every name is importable from ``cityseg.serve``.

Other routes: ``GET /`` (the page, ``static/index.html``: inline JS/CSS, nothing fetched from the internet),
``GET /health``, ``GET /classes`` and ``GET /openapi.json`` (the API's OpenAPI schema). Swagger's ``/docs``
is switched off: it loads its JavaScript from a CDN.

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> app = create_app(Segmenter.from_pretrained("runs/latest"))  # doctest: +SKIP
    >>> TestClient(app).post("/predict?format=json", content=open("street.jpg", "rb").read()).json()  # doctest: +SKIP
    {'width': 2048, 'height': 1024, 'latency_ms': 183.0, 'classes': [{'name': 'road', 'share': 0.38, ...}, ...], ...}
"""

from cityseg.engine import Segmenter
from cityseg.serve.app import PREDICT_BODY, STATIC_PAGE, ServedModel, create_app, model_label, page_html
from cityseg.serve.schemas import ClassesBody, ClassInfo, ClassShare, ErrorBody, HealthBody, PredictionBody, Timing
from cityseg.serve.server import DEFAULT_HOST, DEFAULT_PORT, LocalServer, bind_socket, make_server, serve
from cityseg.serve.settings import (
    MAX_BATCH,
    MAX_MEGAPIXELS,
    MAX_SIDE,
    MAX_UPLOAD_MB,
    QUEUE_SIZE,
    RequestError,
    ServeSettings,
)
from cityseg.serve.upload import (
    ACCEPTED_FORMATS,
    DECODE_ANSWERS,
    HOW_TO_SEND,
    RAW_MEDIA_TYPES,
    decode_upload,
    read_upload,
)
from cityseg.serve.worker import Admission, Inference, InferenceWorker

__all__ = [
    "ACCEPTED_FORMATS",
    "DECODE_ANSWERS",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "HOW_TO_SEND",
    "MAX_BATCH",
    "MAX_MEGAPIXELS",
    "MAX_SIDE",
    "MAX_UPLOAD_MB",
    "PREDICT_BODY",
    "QUEUE_SIZE",
    "RAW_MEDIA_TYPES",
    "STATIC_PAGE",
    "Admission",
    "ClassInfo",
    "ClassShare",
    "ClassesBody",
    "ErrorBody",
    "HealthBody",
    "Inference",
    "InferenceWorker",
    "LocalServer",
    "PredictionBody",
    "RequestError",
    "Segmenter",
    "ServeSettings",
    "ServedModel",
    "Timing",
    "bind_socket",
    "create_app",
    "decode_upload",
    "make_server",
    "model_label",
    "page_html",
    "read_upload",
    "serve",
]
