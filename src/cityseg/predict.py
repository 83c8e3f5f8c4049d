"""Prediction: segment any photo with a saved model, in PyTorch, ONNX Runtime or OpenVINO.

One image goes through five steps::

    file -> open_photo      decode with PIL; JPEG draft decoding and integer reduction keep huge photos small
         -> preprocess      training's evaluation transform: resize to ModelInfo.input_size, normalise
         -> backend         PyTorch, ONNX Runtime or OpenVINO: (B, 3, h, w) float32 -> (B, C, h, w) logits
         -> labels_at_size  logits resized bilinearly towards the photo's size in row bands, argmax
         -> (H, W) uint8 class indices at the photo's own size

The logits are never resized as a whole: a band of rows at a time keeps memory bounded, and past
:data:`BILINEAR_MAX_SCALE` times the model's size the last step is a nearest-neighbour resize of the uint8
label map, so an 8000x8000 photo never becomes a float (C, 8000, 8000) tensor.

A model folder (``models.save_model``) may also hold the ONNX files ``cityseg export`` writes::

    model/config.json, model.safetensors, cityseg.json    the PyTorch model and what it predicts
    model/model.onnx         fp32, dynamic batch and image size
    model/model.int8.onnx    int8 (static, per-channel, QDQ), written only if it agrees with fp32
    model/export.json        the figures of the checks each export passed

``backend="onnx"`` (ONNX Runtime) and ``backend="openvino"`` (OpenVINO, the optional extra
``cityseg[openvino]``) run ``model.int8.onnx`` when it is there, else ``model.onnx`` (or the file named by
``onnx_file``).

Example:
    >>> segmenter = Segmenter.from_pretrained("runs/latest")  # doctest: +SKIP
    >>> classes = segmenter.predict("street.jpg")  # (H, W) uint8 train ids  # doctest: +SKIP
    >>> colour = segmenter.class_set.colorize(classes)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import glob
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cityseg.classes import ClassSet, class_set
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir, natural_key
from cityseg.models import INFO_FILE  # models imports torch only inside its functions

if TYPE_CHECKING:
    from cityseg.models import ModelInfo

ONNX_FILE = "model.onnx"  # fp32 ONNX export, beside the safetensors weights in the model folder
INT8_ONNX_FILE = "model.int8.onnx"  # int8 export; preferred by backend="onnx" when present
EXPORT_REPORT_FILE = "export.json"  # what the export checked, and the figures
BACKENDS = ("torch", "onnx", "openvino")
ID_KINDS = ("classes", "trainids", "labelids")  # what the label PNG holds; see label_writer()
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

BILINEAR_MAX_SCALE = 4  # logits are resized bilinearly up to 4x per axis (and BILINEAR_MAX_PIXELS), nearest beyond
BILINEAR_MAX_PIXELS = 2048 * 2048
BAND_ELEMENTS = 1 << 23  # float32 elements of one band of resized logits (32 MiB)
OVERLAY_ALPHA = 0.5  # weight of the class colours over the photo
OVERLAY_JPEG_QUALITY = 90

# Errors a decoder raises for a file that is not a (complete) image; all become a CitysegError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
_ID_SUFFIX = {"train19": "trainIds", "labelids": "labelIds", "categories": "categoryIds"}


# ---- finding a model --------------------------------------------------------------------------


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The model folder behind ``path``: a model folder, a run folder (``RUN/model``) or ``runs/latest``.

    ``runs/latest`` is a symlink, or on file systems without symlinks a text file naming the run.

    Raises:
        CitysegError: nothing there, or a folder that is neither a model nor a finished run.
    """
    given = Path(path)
    folder = given
    if folder.is_file() and folder.name == "latest":  # the text-file fallback of training.update_latest
        folder = folder.parent / folder.read_text().strip()
    if not folder.exists():
        raise CitysegError(f"model {given} not found; pass a model folder, a run folder or runs/latest")
    if not folder.is_dir():
        raise CitysegError(f"model {given} is a file; pass the model folder (with {INFO_FILE}) or a run folder")
    if (folder / INFO_FILE).is_file():
        return folder
    if (folder / "model" / INFO_FILE).is_file():
        return folder / "model"
    if (folder / "config.yaml").is_file():
        raise CitysegError(f"run {given} has no finished model (no model/{INFO_FILE}); let training finish first")
    raise CitysegError(f"{given} is not a model folder (no {INFO_FILE}) or a run folder (no model/); check the path")


def read_model_info(model_dir: str | os.PathLike) -> ModelInfo:
    """The :class:`~cityseg.models.ModelInfo` of a model folder, read from its ``cityseg.json``."""
    import json

    from cityseg.models import ModelInfo

    path = Path(model_dir) / INFO_FILE
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise CitysegError(f"{path} not found; the model folder is incomplete, save or train it again") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CitysegError(f"cannot read {path} ({exc}); the file is damaged, save or train it again") from None
    if not isinstance(values, dict):
        raise CitysegError(f"{path} is not a JSON object; the file is damaged, save or train it again")
    return ModelInfo.from_dict(values, source=str(path))


def find_onnx_file(model_dir: Path, onnx_file: str | os.PathLike | None = None) -> Path:
    """The ONNX file to run: ``onnx_file`` (a path, or a name inside the model folder), else int8, else fp32."""
    if onnx_file is not None:
        candidate = Path(onnx_file)
        if not candidate.is_file() and (model_dir / candidate).is_file():
            candidate = model_dir / candidate
        if not candidate.is_file():
            raise CitysegError(f"ONNX file {onnx_file} not found; run cityseg export {model_dir} --format onnx")
        return candidate
    for name in (INT8_ONNX_FILE, ONNX_FILE):
        if (model_dir / name).is_file():
            return model_dir / name
    raise CitysegError(f"no {ONNX_FILE} in {model_dir}; run cityseg export {model_dir} --format onnx first")


# ---- reading photos ---------------------------------------------------------------------------


@dataclass
class Photo:
    """A decoded photo: ``image`` RGB, possibly reduced for the model; ``size`` (H, W) of the original."""

    image: Image.Image
    size: tuple[int, int]
    source: str = ""

    @property
    def full_size(self) -> bool:
        return (self.image.height, self.image.width) == tuple(self.size)


def open_photo(
    image: str | os.PathLike | Image.Image | np.ndarray,
    target_size: tuple[int, int] | None = None,
    pairs: bool = False,
    mask_side: str = "right",
) -> Photo:
    """Decode an image as RGB, small enough for the model but remembering its original size.

    Grayscale, palette, RGBA and CMYK images become RGB; the EXIF orientation of camera photos is applied.
    With ``target_size`` a large file is decoded reduced: JPEG by DCT scaling (``Image.draft``, 1/2 to 1/8),
    other formats by an integer ``Image.reduce``, both stopping at twice the target so the final resize
    (training's own) still has detail to average.

    Args:
        image: a file path, a PIL image, or an (H, W, 3) / (H, W) / (H, W, 4) uint8 array.
        target_size: (h, w) the model runs at; None decodes at full size.
        pairs: the file is a pair image (photo and colour mask side by side); its photo half is used.
        mask_side: which half of a pair holds the mask.

    Raises:
        CitysegError: missing, empty, unreadable, corrupt or truncated file; an array that is not an image.
    """
    if isinstance(image, np.ndarray):
        pil = _array_to_image(image)
        return Photo(_reduce(pil, target_size), (pil.height, pil.width), "array")
    if isinstance(image, Image.Image):
        rgb = _to_rgb(image)
        return Photo(_reduce(rgb, target_size), (rgb.height, rgb.width), "image")
    path = Path(image)
    if pairs:
        from cityseg.pairs import read_pair

        photo = Image.fromarray(read_pair(path, mask_side)[0])
        return Photo(_reduce(photo, target_size), (photo.height, photo.width), str(path))
    return _decode_file(path, target_size)


def _decode_file(path: Path, target_size: tuple[int, int] | None) -> Photo:
    try:
        if path.stat().st_size == 0:
            raise CitysegError(f"{path} is empty (0 bytes); replace or remove it (or pass --skip-bad)")
    except OSError as exc:
        raise CitysegError(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
    try:
        pil = Image.open(path)
    except UnidentifiedImageError:
        raise CitysegError(f"{path} is not an image PIL can read; replace or remove it (or pass --skip-bad)") from None
    except Image.DecompressionBombError as exc:
        raise CitysegError(f"{path} is too large to decode safely ({_first_line(exc)}); downscale it first") from None
    except _DECODE_ERRORS as exc:
        raise CitysegError(
            f"cannot open {path}: {_first_line(exc)}; replace or remove it (or pass --skip-bad)"
        ) from None
    try:
        width, height = pil.size
        orientation = _exif_orientation(pil)
        if orientation in (5, 6, 7, 8):  # rotated by 90 degrees: the upright photo is height x width
            width, height = height, width
        if target_size is not None and pil.format == "JPEG":
            side = 2 * max(target_size)  # orientation-proof: at least twice the target on both sides
            pil.draft(None, (side, side))
        pil.load()  # decodes, and closes the file of a single-frame image
    except _DECODE_ERRORS as exc:
        pil.close()
        raise CitysegError(
            f"{path} is corrupt or truncated ({_first_line(exc)}); replace or remove it (or pass --skip-bad)"
        ) from None
    upright = pil
    if orientation != 1:
        with contextlib.suppress(*_DECODE_ERRORS):  # a broken EXIF block should not stop a readable photo
            upright = ImageOps.exif_transpose(pil)
    return Photo(_reduce(_to_rgb(upright), target_size), (height, width), str(path))


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB from any PIL mode; 16-bit and float grayscale are scaled to 8 bits first (PIL would clip them)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16"):
            values = values / 257  # the full 16-bit range onto 0..255
        else:  # 32-bit integer or float: no fixed range, so stretch what is there
            values = (values - values.min()) * (255 / max(float(values.max() - values.min()), 1e-6))
        image = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB")


def _exif_orientation(pil: Image.Image) -> int:
    try:
        return int(pil.getexif().get(0x0112, 1))
    except Exception:  # unreadable EXIF: treat the photo as upright
        return 1


def _reduce(image: Image.Image, target_size: tuple[int, int] | None) -> Image.Image:
    """Shrink by a whole factor while the image stays at least twice ``target_size`` (cheap box filter)."""
    if target_size is None:
        return image
    factor = min(image.width // (2 * target_size[1]), image.height // (2 * target_size[0]))
    return image.reduce(factor) if factor >= 2 else image


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise CitysegError(
            f"expected a uint8 image array, got {array.dtype}; scale it to 0..255 and use .astype(np.uint8)"
        )
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        return _to_rgb(Image.fromarray(np.ascontiguousarray(array)))
    raise CitysegError(f"expected an (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) gray image array, got {array.shape}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


# ---- the model input --------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _eval_transform(size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]):
    from cityseg.transforms import eval_transform

    return eval_transform(size, mean, std)


_NO_MASK = np.zeros((1, 1), dtype=np.uint8)  # eval_transform resizes the photo only; the mask is a placeholder


def preprocess(photo: np.ndarray | Image.Image, info: ModelInfo) -> np.ndarray:
    """An RGB photo as the model's input: training's evaluation transform (resize to ``info.input_size``,
    scale to [0, 1], normalise with ``info.mean`` / ``info.std``).

    It calls :func:`cityseg.transforms.eval_transform` itself, so prediction can never drift from what
    the model was validated with.

    Args:
        photo: (H, W, 3) uint8 RGB array or an RGB PIL image.
        info: the model's ModelInfo.

    Returns:
        (3, h, w) float32 array.
    """
    array = np.array(photo, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on PIL's read-only buffers
    transform = _eval_transform(tuple(info.input_size), tuple(info.mean), tuple(info.std))
    image, _ = transform(array, _NO_MASK)  # (3, h, w)
    return image.numpy()


# ---- back to the photo's size -----------------------------------------------------------------


def labels_at_size(
    logits: np.ndarray,
    size: tuple[int, int],
    max_scale: float = BILINEAR_MAX_SCALE,
    max_pixels: int = BILINEAR_MAX_PIXELS,
) -> np.ndarray:
    """Class indices at ``size`` from (C, h, w) logits: bilinear logits then argmax, as evaluation scores them.

    The logits are resized one band of rows at a time (at most :data:`BAND_ELEMENTS` floats), which gives
    exactly ``F.interpolate(mode="bilinear", align_corners=False)`` then argmax. Past ``max_scale`` times the
    logits' size (per axis) or ``max_pixels`` in all, the bilinear step stops there and the uint8 labels
    go the rest of the way by nearest neighbour: a step of a few pixels at that size, and the cost and
    memory no longer grow with the photo.

    Args:
        logits: (C, h, w) float scores.
        size: (H, W) wanted.
        max_scale: largest bilinear magnification per axis.
        max_pixels: largest bilinear output.

    Returns:
        (H, W) uint8 class indices.
    """
    import torch
    import torch.nn.functional as F

    channels, in_h, in_w = logits.shape
    out_h, out_w = int(size[0]), int(size[1])
    if (in_h, in_w) == (out_h, out_w):
        return logits.argmax(axis=0).astype(np.uint8)
    mid_h, mid_w = min(out_h, round(max_scale * in_h)), min(out_w, round(max_scale * in_w))
    shrink = min(1.0, math.sqrt(max_pixels / (mid_h * mid_w)))
    mid_h, mid_w = max(1, round(mid_h * shrink)), max(1, round(mid_w * shrink))
    source = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))  # (C, h, w)
    top_rows, bottom_rows, weights = _bilinear_taps(mid_h, in_h)
    labels = np.empty((mid_h, mid_w), dtype=np.uint8)
    band = max(1, BAND_ELEMENTS // (channels * max(mid_w, in_w)))
    with torch.inference_mode():
        for start in range(0, mid_h, band):
            rows = slice(start, min(mid_h, start + band))
            # interpolate between source rows, then along the width (rows kept: F.interpolate at scale 1 is exact)
            blended = torch.lerp(source[:, top_rows[rows]], source[:, bottom_rows[rows]], weights[rows, None])
            resized = F.interpolate(blended[None], size=(blended.shape[1], mid_w), mode="bilinear", align_corners=False)
            labels[rows] = resized[0].max(dim=0).indices.numpy()  # (band, W); max() is faster than argmax() here
    if (mid_h, mid_w) != (out_h, out_w):
        labels = np.asarray(Image.fromarray(labels).resize((out_w, out_h), Image.Resampling.NEAREST))
    return labels


def _bilinear_taps(out_len: int, in_len: int):
    """Source rows and weights of bilinear resizing ``in_len`` -> ``out_len`` (align_corners=False, as torch)."""
    import torch

    position = ((torch.arange(out_len, dtype=torch.float64) + 0.5) * (in_len / out_len) - 0.5).clamp(min=0)
    lower = position.floor().long().clamp(max=in_len - 1)
    upper = (lower + 1).clamp(max=in_len - 1)
    return lower, upper, (position - lower).clamp(0, 1).float()


# ---- sliding-window inference ------------------------------------------------------------------


def window_stride(window: tuple[int, int], overlap: float) -> tuple[int, int]:
    """The (height, width) step between windows that share ``overlap`` of their size (``data.eval_overlap``).

    Example:
        >>> window_stride((512, 1024), 0.25)
        (384, 768)
    """
    if not 0 <= overlap < 1:
        raise CitysegError(f"data.eval_overlap must be at least 0 and below 1, not {overlap}")
    return max(1, math.ceil(window[0] * (1 - overlap))), max(1, math.ceil(window[1] * (1 - overlap)))


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows ``stride`` apart covering ``length``; the last one is moved back to end at the edge.

    A stride wider than the window is cut to it: windows may overlap, but never leave a gap between them.
    """
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, min(stride, window)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_window_logits(net: Callable, image, window: tuple[int, int], stride: tuple[int, int], num_classes: int):
    """Logits of a whole image from overlapping windows, averaged where they overlap.

    The network sees windows of the size it was trained on (e.g. the training crop) instead of the
    whole image at once, as in the usual Cityscapes evaluation at 2048x1024; every pixel's logits are
    the mean over the windows that cover it. The windows of a row and column are ``stride`` apart and
    the last one ends at the image's edge, so every pixel is covered (a stride wider than the window is
    cut to the window); a window larger than the image shrinks to it.

    Args:
        net: maps (N, 3, h, w) images to (N, C, h, w) logits (an ``nn.Module``; logits of another size
            are resized bilinearly to the window).
        image: (N, 3, H, W) float tensor, already normalised.
        window: (height, width) of each window, both positive.
        stride: (height, width) step between windows, both positive (see :func:`window_stride`).
        num_classes: C, the channels of the logits.

    Returns:
        (N, C, H, W) float32 logits on ``image``'s device.

    Example:
        >>> net = torch.nn.Conv2d(3, 5, 1)  # doctest: +SKIP
        >>> sliding_window_logits(net, torch.rand(2, 3, 64, 128), (32, 64), (16, 32), 5).shape  # doctest: +SKIP
        torch.Size([2, 5, 64, 128])
    """
    import torch
    import torch.nn.functional as F

    if min(window) <= 0 or min(stride) <= 0:
        raise CitysegError(f"sliding windows need a positive size and stride, not window {window}, stride {stride}")
    batch, _, height, width = image.shape
    win_h, win_w = min(int(window[0]), height), min(int(window[1]), width)
    total = torch.zeros((batch, num_classes, height, width), dtype=torch.float32, device=image.device)  # (N, C, H, W)
    covered = torch.zeros((1, 1, height, width), dtype=torch.float32, device=image.device)  # windows per pixel
    for top in _window_starts(height, win_h, int(stride[0])):
        for left in _window_starts(width, win_w, int(stride[1])):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            logits = net(image[:, :, rows, cols])  # (N, C, win_h, win_w)
            if logits.shape[1] != num_classes:
                raise ValueError(f"the network gives {logits.shape[1]} channels, not num_classes={num_classes}")
            if logits.shape[-2:] != (win_h, win_w):
                logits = F.interpolate(logits, size=(win_h, win_w), mode="bilinear", align_corners=False)
            total[:, :, rows, cols] += logits.float()
            covered[:, :, rows, cols] += 1
    return total / covered  # every pixel is covered at least once


def flip_averaged_logits(net: Callable, images):
    """Mean of the logits of ``images`` and, mirrored back, of their mirror images: flip test-time augmentation.

    Street scenes look as plausible mirrored (training flips them too), so the two passes err differently
    and their mean is a little more accurate, at twice the cost.

    Args:
        net: maps (N, 3, H, W) images to (N, C, H, W) logits (torch tensors, or NumPy arrays for a backend).
        images: (N, 3, H, W) float tensor or array, already normalised.
    """
    return (net(images) + _mirror(net(_mirror(images)))) / 2


def _mirror(images):
    """(..., W) tensor or array, left and right swapped."""
    return images.flip(-1) if hasattr(images, "flip") else np.ascontiguousarray(images[..., ::-1])


def eval_net(net, window: tuple[int, int] = (0, 0), overlap: float = 0.33, flip: bool = False, num_classes: int = 0):
    """``net`` wrapped to evaluate as the config's ``data.eval_window``, ``eval_overlap`` and ``eval_flip`` say.

    Example:
        >>> windowed = eval_net(net, (512, 1024), overlap=0.33, flip=True, num_classes=19)  # doctest: +SKIP
        >>> windowed(images).shape  # (B, C, H, W) for (B, 3, H, W) images of any size  # doctest: +SKIP
    """
    import torch

    if min(window) > 0:
        net = sliding_window_net(net, window, overlap, num_classes)
    if not flip:
        return net

    class FlipAveraged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return flip_averaged_logits(self.net, images)

    return FlipAveraged()


def sliding_window_net(net, window: tuple[int, int], overlap: float, num_classes: int):
    """``net`` wrapped to run as :func:`sliding_window_logits` does, for code that takes a network.

    Example:
        >>> windowed = sliding_window_net(net, (512, 1024), overlap=0.33, num_classes=19)  # doctest: +SKIP
        >>> windowed(images).shape  # (B, C, H, W) for (B, 3, H, W) images of any size  # doctest: +SKIP
    """
    import torch

    stride = window_stride(tuple(window), overlap)

    class SlidingWindow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H, W)
            return sliding_window_logits(self.net, images, tuple(window), stride, num_classes)

    return SlidingWindow()


# ---- backends ---------------------------------------------------------------------------------


class TorchBackend:
    """Runs a PyTorch network: (B, 3, h, w) float32 -> (B, C, h, w) float32 logits, in inference mode."""

    name = "torch"

    def __init__(self, net):
        self.net = net.eval()

    def __str__(self) -> str:
        return "PyTorch"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).float().numpy()


class OnnxBackend:
    """Runs an ONNX file in ONNX Runtime (CPU): (B, 3, h, w) float32 -> (B, C, h, w) float32 logits."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.session = onnx_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __str__(self) -> str:
        return f"ONNX Runtime ({self.path.name})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def num_classes(self) -> int | None:
        channels = self.session.get_outputs()[0].shape[1]
        return channels if isinstance(channels, int) else None


class OpenVinoBackend:
    """Runs an ONNX file in OpenVINO (CPU): (B, 3, h, w) float32 -> (B, C, h, w) float32 logits.

    OpenVINO reads the same ONNX files as ONNX Runtime, int8 QDQ files included, and runs their 8-bit
    convolutions with its own kernels. Inference precision is pinned to f32: on CPUs with bf16 units
    OpenVINO would otherwise compute the fp32 model in bf16, and the answers would no longer be fp32's.
    """

    name = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        try:
            import openvino
        except ImportError:
            raise CitysegError(
                "the openvino backend needs OpenVINO: pip install 'cityseg[openvino]' (or use --backend onnx)"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise CitysegError(f"ONNX file {self.path} not found; run cityseg export first")
        settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = openvino.Core()
            self.model = core.compile_model(core.read_model(str(self.path)), "CPU", settings)
        except Exception as exc:  # OpenVINO raises RuntimeError with a multi-line report
            problem = _first_line(exc)
            raise CitysegError(f"cannot load {self.path}: {problem}; the file is damaged, export it again") from None
        self.request = self.model.create_infer_request()

    def __str__(self) -> str:
        return f"OpenVINO ({self.path.name})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[0].copy()  # the request reuses its output buffer

    def num_classes(self) -> int | None:
        channels = self.model.outputs[0].get_partial_shape()[1]
        return channels.get_length() if channels.is_static else None


ONNX_RUNTIMES = {"onnx": OnnxBackend, "openvino": OpenVinoBackend}  # backends that run the exported ONNX files


def onnx_session(path: str | os.PathLike, threads: int | None = None, optimization: str = "all", **options: Any):
    """An ONNX Runtime CPU session with full graph optimisation; ``threads`` intra-op threads (None: all cores).

    Args:
        path: the .onnx file.
        threads: intra-op threads; inter-op parallelism stays at 1 (one convolution at a time is fastest here).
        optimization: ``disable``, ``basic``, ``extended`` or ``all`` (ONNX Runtime's graph optimisation levels).
        **options: further ``SessionOptions`` attributes (e.g. ``enable_profiling=True``).

    Raises:
        CitysegError: the file is missing or not a model ONNX Runtime can load.
    """
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    settings = ort.SessionOptions()
    settings.graph_optimization_level = levels[optimization]
    settings.intra_op_num_threads = int(threads or 0)
    settings.inter_op_num_threads = 1
    settings.log_severity_level = 3  # errors only: the CPU provider's notes about layout changes are noise here
    for key, value in options.items():
        setattr(settings, key, value)
    path = Path(path)
    if not path.is_file():
        raise CitysegError(f"ONNX file {path} not found; run cityseg export first")
    try:
        return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        raise CitysegError(f"cannot load {path}: {_first_line(exc)}; the file is damaged, export it again") from None


# ---- the segmenter ----------------------------------------------------------------------------


class Segmenter:
    """A model ready to segment photos of any size: what it predicts (``info``) and how it runs (``backend``).

    Args:
        backend: a callable from (B, 3, h, w) float32 to (B, C, h, w) logits (:class:`TorchBackend`,
            :class:`OnnxBackend`).
        info: the model's ModelInfo (input size, normalisation, classes).
        model_dir: the folder it was loaded from, if any.

    Example:
        >>> segmenter = Segmenter.from_pretrained("runs/latest", backend="onnx")  # doctest: +SKIP
        >>> segmenter.predict("street.jpg").shape  # the photo's own (H, W)  # doctest: +SKIP
        (1024, 2048)
    """

    def __init__(
        self,
        backend: Callable[[np.ndarray], np.ndarray],
        info: ModelInfo,
        model_dir: Path | None = None,
        flip: bool = False,
    ):
        self.backend = backend
        self.info = info
        self.model_dir = model_dir
        self.flip = flip  # also segment the mirror image and average the logits (twice the time)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        backend: str = "torch",
        onnx_file: str | os.PathLike | None = None,
        threads: int | None = None,
        flip: bool = False,
    ) -> Segmenter:
        """Load a model folder (``models.save_model`` output), a run folder, or ``runs/latest``.

        Args:
            path: the model.
            backend: ``torch`` (the safetensors weights), ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO);
                the last two run an exported ONNX file (see :func:`find_onnx_file`).
            onnx_file: with ``onnx`` or ``openvino``, the file to run (name in the model folder, or a path).
            threads: CPU threads (torch: ``torch.set_num_threads``, a process-wide setting; ONNX Runtime and
                OpenVINO: the model's inference threads). None keeps the libraries' defaults.
            flip: average each photo's logits with its mirror image's (flip test-time augmentation, as
                ``cityseg evaluate --flip``): a little more accurate, twice the time.

        Raises:
            CitysegError: unknown backend, missing or damaged model files, an ONNX file for other classes.
        """
        if backend not in BACKENDS:
            raise CitysegError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        model_dir = resolve_model_dir(path)
        if backend == "torch":
            import torch

            from cityseg.models import load_model

            if threads:
                torch.set_num_threads(int(threads))
            net, info = load_model(model_dir)
            return cls(TorchBackend(net), info, model_dir, flip)
        info = read_model_info(model_dir)
        runner = ONNX_RUNTIMES[backend](find_onnx_file(model_dir, onnx_file), threads=threads)
        channels = runner.num_classes()
        if channels is not None and channels != info.num_classes:
            raise CitysegError(
                f"{runner.path} outputs {channels} classes but {model_dir / INFO_FILE} lists {info.num_classes}; "
                f"export the model again (cityseg export {model_dir} --format onnx)"
            )
        return cls(runner, info, model_dir, flip)

    @property
    def class_set(self) -> ClassSet:
        """The classes the model predicts (names, colours, label-id mapping)."""
        return self.info.class_set_obj()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) float32 preprocessed images -> (B, C, h, w) float32 logits."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return flip_averaged_logits(self.backend, batch) if self.flip else self.backend(batch)

    def open(self, image: str | os.PathLike | Image.Image | np.ndarray, pairs: bool = False) -> Photo:
        """Decode ``image`` for this model (see :func:`open_photo`)."""
        return open_photo(image, tuple(self.info.input_size), pairs=pairs)

    def predict(self, image: str | os.PathLike | Image.Image | np.ndarray, pairs: bool = False) -> np.ndarray:
        """Segment one photo.

        Args:
            image: a file path, a PIL image or an (H, W, 3) uint8 RGB array (gray and RGBA are converted).
            pairs: ``image`` is a pair file; its photo half is segmented.

        Returns:
            (H, W) uint8 class indices at the photo's original size (train ids for a ``train19`` model).
        """
        return self.predict_batch([image], pairs=pairs)[0]

    def predict_batch(self, images: Sequence, pairs: bool = False) -> list[np.ndarray]:
        """Segment several photos in one forward pass; a list of (H, W) uint8 class-index arrays."""
        photos = [self.open(image, pairs=pairs) for image in images]
        return self.predict_photos(photos)[0]

    def predict_photos(self, photos: Sequence[Photo]) -> tuple[list[np.ndarray], float]:
        """Segment decoded photos in one batch; returns (labels at each photo's size, model seconds)."""
        if not photos:
            return [], 0.0
        batch = np.stack([preprocess(photo.image, self.info) for photo in photos])  # (B, 3, h, w)
        started = time.perf_counter()
        logits = self.logits(batch)  # (B, C, h, w)
        model_seconds = time.perf_counter() - started
        return [labels_at_size(scores, photo.size) for scores, photo in zip(logits, photos, strict=True)], model_seconds


# ---- what the label PNG holds -----------------------------------------------------------------


def label_writer(info: ModelInfo, ids: str = "classes") -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """How class indices become the values of the label PNG, and the file-name suffix that says what they are.

    Args:
        info: the model's ModelInfo.
        ids: ``classes`` (the model's class indices: train ids for a train19 model), ``trainids`` (Cityscapes
            train ids, 255 = ignored) or ``labelids`` (official label ids 0..33).

    Returns:
        (function from (H, W) class indices to (H, W) uint8 ids, suffix such as ``trainIds``).

    Raises:
        CitysegError: the model's classes cannot be written as the ids asked for (e.g. k-means clusters have
            no official label ids).
    """
    if ids not in ID_KINDS:
        raise CitysegError(f"unknown --ids {ids!r}; choose one of: {', '.join(ID_KINDS)}")
    classes = info.class_set_obj()
    described = f"{info.num_classes} {info.class_set} classes"
    if ids == "classes":
        return (lambda labels: labels), _ID_SUFFIX.get(info.class_set, "classIds")
    if ids == "trainids":
        if info.class_set == "train19":
            return (lambda labels: labels), "trainIds"
        if info.class_set == "labelids":
            train19 = class_set("train19")
            return (lambda labels: train19.from_label_ids(labels)), "trainIds"
        raise CitysegError(
            f"the model predicts {described}, which have no Cityscapes train ids; use --ids classes or --ids labelids"
        )
    if info.class_set == "kmeans" or info.class_set not in ("train19", "categories", "labelids"):
        raise CitysegError(
            f"the model predicts {described} (colour clusters), which have no official label ids; "
            "use --ids classes (cluster indices), or train with labels.method=palette"
        )
    return classes.to_label_ids, "labelIds"


# ---- predicting files -------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files, folders (the images directly inside, natural order) and glob patterns.

    Raises:
        CitysegError: a path that does not exist, a folder or pattern without images, or no inputs at all.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        text = str(item)
        if path.is_dir():
            images = sorted((p for p in path.iterdir() if _is_image_name(p) and p.is_file()), key=natural_key)
            if not images:
                raise CitysegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}; check the path")
            found += images
        elif path.exists():
            found.append(path)
        elif any(char in text for char in "*?["):
            matches = sorted(
                (Path(p) for p in glob.glob(text, recursive=True) if _is_image_name(Path(p)) and Path(p).is_file()),
                key=natural_key,
            )
            if not matches:
                raise CitysegError(f"no images match {text}; check the pattern (quote it so the shell leaves it)")
            found += matches
        else:
            raise CitysegError(f"input {text} does not exist; pass image files, folders or glob patterns")
    if not found:
        raise CitysegError("no input images given; pass image files, folders or glob patterns")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _is_image_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(IMAGE_SUFFIXES) and not name.startswith(".") and not name.endswith("_labelids.png")


def output_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per input: the file stem, prefixed with its folder (then numbered) on a clash."""
    used: set[str] = set()
    stems = []
    for path in paths:
        stem = path.stem
        if stem in used:
            stem = f"{path.parent.name}_{path.stem}"
        base, number = stem, 2
        while stem in used:
            stem, number = f"{base}-{number}", number + 1
        used.add(stem)
        stems.append(stem)
    return stems


@dataclass
class PredictSummary:
    """What :func:`predict_files` did: files written, images skipped, per-image timings (milliseconds)."""

    out_dir: Path
    backend: str
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # decode + preprocess + model share + resize back
    model_ms: list[float] = field(default_factory=list)  # model share alone (batch time / batch size)

    @property
    def images(self) -> int:
        return len(self.latency_ms)

    def __str__(self) -> str:
        lines = [f"predicted {self.images} image(s) with {self.backend} into {self.out_dir}"]
        if self.latency_ms:
            median, p90 = np.percentile(self.latency_ms, [50, 90])
            lines.append(
                f"latency per image: median {median:.1f} ms, p90 {p90:.1f} ms (decode, model, resize back; "
                f"model alone: median {np.median(self.model_ms):.1f} ms)"
            )
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable image(s):")
            lines += [f"  {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


def predict_files(
    model: str | os.PathLike | Segmenter,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    backend: str = "torch",
    ids: str = "classes",
    pairs: bool = False,
    mask_side: str = "right",
    batch_size: int = 1,
    threads: int | None = None,
    onnx_file: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    overlay_alpha: float = OVERLAY_ALPHA,
    flip: bool = False,
) -> PredictSummary:
    """Segment image files and write, per image, ``STEM_<ids>.png``, ``STEM_color.png`` and ``STEM_overlay.jpg``.

    The label PNG holds one uint8 id per pixel (see :func:`label_writer`), the colour PNG the official
    palette, the overlay the colours blended over the photo; all at the photo's own size, each written
    atomically.

    Args:
        model: a model folder, run folder, ``runs/latest``, or a loaded :class:`Segmenter`.
        inputs: image files, folders and glob patterns.
        out_dir: where outputs go (created).
        backend: ``torch``, ``onnx`` or ``openvino``.
        ids: ``classes``, ``trainids`` or ``labelids``.
        pairs: inputs are pair images; their photo half is used.
        mask_side: which half of a pair is the mask.
        batch_size: images per forward pass.
        threads: CPU threads for the backend.
        onnx_file: ONNX file to run with ``backend="onnx"`` or ``"openvino"``.
        skip_bad: skip unreadable images (listed in the summary) instead of stopping at the first.
        progress: show a tqdm progress bar.
        overlay_alpha: weight of the colours in the overlay.
        flip: average each photo's logits with its mirror image's (twice the time); ignored for a loaded
            :class:`Segmenter`, which has its own ``flip``.

    Returns:
        A :class:`PredictSummary` (its ``str`` is the latency summary).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise CitysegError(f"--batch-size must be at least 1, not {batch_size}")
    if mask_side not in ("right", "left"):
        raise CitysegError(f"--mask-side must be right or left, not {mask_side!r}")
    loaded = isinstance(model, Segmenter)
    segmenter = model if loaded else Segmenter.from_pretrained(model, backend, onnx_file, threads, flip)
    to_ids, suffix = label_writer(segmenter.info, ids)  # fails before any image is read
    paths = expand_inputs(inputs)
    writer = OutputWriter(ensure_writable_dir(out_dir), segmenter.class_set, to_ids, suffix, overlay_alpha)
    stems = dict(zip(paths, output_stems(paths), strict=True))
    summary = PredictSummary(writer.out_dir, str(segmenter.backend))
    target = tuple(segmenter.info.input_size)

    def reopen_full(path: Path) -> Image.Image:  # the overlay needs the photo at its own size
        return open_photo(path, None, pairs=pairs, mask_side=mask_side).image

    with tqdm(total=len(paths), desc="predict", unit="image", disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            loaded: list[tuple[Path, Photo, float]] = []  # (path, photo, decode seconds)
            for path in paths[start : start + batch_size]:
                began = time.perf_counter()
                try:
                    photo = open_photo(path, target, pairs=pairs, mask_side=mask_side)
                except CitysegError as exc:
                    if not skip_bad:
                        raise
                    summary.skipped.append((str(path), str(exc)))
                    bar.update(1)
                    continue
                loaded.append((path, photo, time.perf_counter() - began))
            if not loaded:
                continue
            began = time.perf_counter()
            batch = np.stack([preprocess(photo.image, segmenter.info) for _, photo, _ in loaded])  # (B, 3, h, w)
            prep_s = (time.perf_counter() - began) / len(loaded)
            began = time.perf_counter()
            logits = segmenter.logits(batch)  # (B, C, h, w)
            model_s = (time.perf_counter() - began) / len(loaded)
            for (path, photo, decode_s), scores in zip(loaded, logits, strict=True):
                began = time.perf_counter()
                labels = labels_at_size(scores, photo.size)  # (H, W) uint8 class indices
                back_s = time.perf_counter() - began
                summary.latency_ms.append(1000 * (decode_s + prep_s + model_s + back_s))
                summary.model_ms.append(1000 * model_s)
                full = photo.image if photo.full_size else reopen_full(path)
                summary.written += writer.write(stems[path], full, labels)
                bar.update(1)
    return summary


@dataclass
class OutputWriter:
    """Writes the three images of one prediction into ``out_dir``, each atomically.

    ``STEM_<suffix>.png`` (uint8 ids, see :func:`label_writer`), ``STEM_color.png`` (the class colours) and
    ``STEM_overlay.jpg`` (the colours blended over the photo with weight ``alpha``).
    """

    out_dir: Path
    classes: ClassSet
    to_ids: Callable[[np.ndarray], np.ndarray]
    suffix: str
    alpha: float = OVERLAY_ALPHA

    def write(self, stem: str, photo: Image.Image, labels: np.ndarray) -> list[Path]:
        """Write the outputs of ``labels`` ((H, W) uint8 class indices) over ``photo`` (RGB, W x H)."""
        ids_path = self.out_dir / f"{stem}_{self.suffix}.png"
        color_path = self.out_dir / f"{stem}_color.png"
        overlay_path = self.out_dir / f"{stem}_overlay.jpg"
        _save(Image.fromarray(np.ascontiguousarray(self.to_ids(labels), dtype=np.uint8)), ids_path, compress_level=1)
        colour = Image.fromarray(labels)
        colour.putpalette(self.classes.palette().reshape(-1).tolist())  # colours by table lookup inside PIL
        colour = colour.convert("RGB")
        _save(colour, color_path, compress_level=1)  # fast zlib: large label images are mostly flat runs
        _save(Image.blend(photo, colour, self.alpha), overlay_path, quality=OVERLAY_JPEG_QUALITY)
        return [ids_path, color_path, overlay_path]


def _save(image: Image.Image, path: Path, **options: Any) -> None:
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)
    except OSError as exc:
        raise CitysegError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
