"""Reading an upload: the body of a request (raw bytes or a multipart form) and its image, within the limits.

Decoding is :func:`cityseg.images.decode_image`'s, as for ``cityseg predict``; here its errors become HTTP
answers (:data:`DECODE_ANSWERS`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.datastructures import UploadFile

from cityseg.images import (
    CorruptImageError,
    DecodeError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    Photo,
    TruncatedImageError,
    decode_image,
)
from cityseg.serve.settings import RequestError, ServeSettings, mib

# What Image.open may try: common photo formats only, none that hands the file to an external program.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
RAW_MEDIA_TYPES = ("application/octet-stream", "")  # besides image/*: bytes whose type the client did not know
HOW_TO_SEND = (
    "send the photo's bytes with Content-Type image/jpeg (or image/png ...), "
    "e.g. curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' URL/predict, "
    "or a multipart form: -F file=@photo.jpg"
)
HOW_TO_SEND_VIDEO = (
    "send the video's bytes with Content-Type video/mp4 (or video/webm ...), "
    "e.g. curl --data-binary @drive.mp4 -H 'Content-Type: video/mp4' URL/predict/video, "
    "or a multipart form: -F file=@drive.mp4"
)
UPLOAD_KINDS = {"photo": ("image/", HOW_TO_SEND), "video": ("video/", HOW_TO_SEND_VIDEO)}  # media type prefix, advice


async def read_upload(request: Request, limit: int, kind: str = "photo") -> bytes:
    """The bytes of a request's photo (or, with ``kind="video"``, video): its raw body, or the one file of a form.

    Raises:
        RequestError: 413 for a body over ``limit`` (refused from Content-Length before reading when it is
            given), 415 for a content type that is not an image (a video), 400 for a form without a file.
    """
    prefix, how_to_send = UPLOAD_KINDS[kind]
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = media_type == "multipart/form-data"
    if not (is_form or media_type.startswith(prefix) or media_type in RAW_MEDIA_TYPES):
        what = "an image" if kind == "photo" else "a video"
        raise RequestError(415, "unsupported_media_type", f"content type {media_type} is not {what}; {how_to_send}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "upload_too_large", _too_large(int(declared), limit, kind))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "upload_too_large", _too_large(size, limit, kind, at_least=True))
        chunks.append(chunk)
    body = b"".join(chunks)
    return await _form_file(request, body, how_to_send) if is_form else body


def _too_large(size: int, limit: int, kind: str, at_least: bool = False) -> str:
    amount = f"over {mib(size)}" if at_least else mib(size)
    shorter = " or shorter" if kind == "video" else ""
    return (
        f"the upload is {amount}, over this server's limit of {mib(limit)}; "
        f"send a smaller{shorter} or more compressed {kind}"
    )


async def _form_file(request: Request, body: bytes, how_to_send: str = HOW_TO_SEND) -> bytes:
    """The file in a multipart body already read (the body is replayed to Starlette's form parser)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        message = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
        raise RequestError(400, "bad_form", f"cannot read the multipart form ({message}); {how_to_send}") from None
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise RequestError(400, "no_file", f"the multipart form holds no file; {how_to_send}")
        return await uploads[0].read()
    finally:
        await form.close()


def decode_upload(data: bytes, target_size: tuple[int, int], settings: ServeSettings) -> Photo:
    """Decode uploaded bytes as an upright RGB photo, reduced towards ``target_size`` but knowing its own size.

    :func:`cityseg.images.decode_image` does it, as for ``cityseg predict``: the size in the header is
    checked against the limits before any pixel is decoded, and JPEGs are decoded at a reduced scale (DCT
    scaling) when the model needs far fewer pixels. Its errors become HTTP answers here.

    Raises:
        RequestError: 400 for an empty body, not an image, a corrupt or truncated file; 413 for too many pixels.
    """
    try:
        return decode_image(
            data,
            target_size,
            formats=ACCEPTED_FORMATS,
            max_pixels=settings.max_pixels,
            max_side=settings.max_side,
            name="the upload",
        )
    except DecodeError as exc:
        kind = next(kind for kind in type(exc).__mro__ if kind in DECODE_ANSWERS)  # the closest type answered
        status, code, message = DECODE_ANSWERS[kind]
        raise RequestError(status, code, message(exc, settings)) from None


def _too_many_pixels(exc: ImageTooLargeError, settings: ServeSettings) -> str:
    if exc.size is None:  # PIL's decompression-bomb limit, before the header's size is known
        return "the image has too many pixels to decode safely; downscale it"
    width, height = exc.size
    return (
        f"the image is {width}x{height} pixels, over this server's limit of {settings.max_pixels / 1e6:g} "
        f"megapixels and {settings.max_side} pixels a side; downscale it"
    )


# The answer to each decode error: HTTP status, error code, and the message from the error and the limits.
DECODE_ANSWERS: dict[type[DecodeError], tuple[int, str, Callable[[DecodeError, ServeSettings], str]]] = {
    EmptyImageError: (400, "empty_body", lambda exc, _: f"the request holds no image (0 bytes); {HOW_TO_SEND}"),
    NotAnImageError: (
        400,
        "not_an_image",
        lambda exc, _: f"the upload is not an image this server reads ({', '.join(ACCEPTED_FORMATS)})",
    ),
    ImageTooLargeError: (413, "image_too_large", _too_many_pixels),
    CorruptImageError: (
        400,
        "corrupt_image",
        lambda exc, _: f"cannot open the image ({exc.reason}); send the complete file",
    ),
    TruncatedImageError: (
        400,
        "corrupt_image",
        lambda exc, _: f"the image is corrupt or truncated ({exc.reason}); send the complete file",
    ),
    DecodeError: (400, "corrupt_image", lambda exc, _: f"cannot read the image ({exc.reason}); send it again"),
}
