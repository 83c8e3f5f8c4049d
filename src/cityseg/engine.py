"""The prediction engine: a saved model that segments any photo, in PyTorch, ONNX Runtime or OpenVINO.

One image goes through five steps::

    file -> decode_image    images.py: upright RGB; JPEG draft decoding and integer reduction keep huge photos small
         -> preprocess      training's evaluation transform: resize to ModelInfo.input_size, normalise
         -> backend         backends.py, PyTorch, ONNX Runtime or OpenVINO: (B, 3, h, w) float32 -> (B, C, h, w)
         -> labels_at_size  inference.py: logits resized bilinearly towards the photo's size in row bands, argmax
         -> (H, W) uint8 class indices at the photo's own size

:class:`Segmenter` holds a model and its backend and runs those steps; every consumer calls it: the file
loop (:func:`cityseg.predict.predict_files`), videos (:func:`cityseg.video.predict_video`), the server
(:mod:`cityseg.serve`) and the export's checks (:mod:`cityseg.export`). What a caller chooses for a
prediction is one :class:`PredictOptions`. What a prediction writes (label ids, colours, overlays) is
:mod:`cityseg.outputs`'.

Example:
    >>> segmenter = Segmenter.from_pretrained("runs/latest")  # doctest: +SKIP
    >>> classes = segmenter.predict("street.jpg")  # (H, W) uint8 train ids  # doctest: +SKIP
    >>> colour = segmenter.class_set.colorize(classes)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cityseg.backends import BACKEND_CHOICES, load_backend
from cityseg.defaults import DEFAULT_BACKEND, ID_KINDS, MASK_SIDES, OVERLAY_ALPHA, PREDICT_BATCH
from cityseg.errors import CitysegError
from cityseg.images import Photo, decode_image
from cityseg.inference import edge_labels_at_size, eval_net, labels_at_size
from cityseg.model_sources import resolve_model_dir

if TYPE_CHECKING:
    from cityseg.classes import ClassSet
    from cityseg.models import ModelInfo

# ---- reading photos ---------------------------------------------------------------------------


def open_photo(
    image: str | os.PathLike | Image.Image | np.ndarray,
    target_size: tuple[int, int] | None = None,
    pairs: bool = False,
    mask_side: str = "right",
) -> Photo:
    """Decode an image for a model that runs at ``target_size`` (see :func:`cityseg.images.decode_image`).

    Args:
        image: a file path, a PIL image, or an (H, W, 3) / (H, W) / (H, W, 4) uint8 array.
        target_size: (h, w) the model runs at; None decodes at full size.
        pairs: the file is a pair image (photo and colour mask side by side); its photo half is used.
        mask_side: which half of a pair holds the mask.

    Raises:
        CitysegError: missing, empty, unreadable, corrupt or truncated file; an array that is not an image.
    """
    if pairs and not isinstance(image, np.ndarray | Image.Image):
        from cityseg.pairs import read_pair

        image = read_pair(image, mask_side)[0]
    return decode_image(image, target_size)


# ---- the model input --------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _eval_transform(size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]):
    from cityseg.transforms import eval_transform

    return eval_transform(size, mean, std)


_NO_MASK = np.zeros((1, 1), dtype=np.uint8)  # eval_transform resizes the photo only; the mask is a placeholder


def preprocess(photo: np.ndarray | Image.Image, info: ModelInfo, torch_free: bool = False) -> np.ndarray:
    """An RGB photo as the model's input: training's evaluation transform (resize to ``info.input_size``,
    scale to [0, 1], normalise with ``info.mean`` / ``info.std``).

    It calls :func:`cityseg.transforms.eval_transform` itself, so prediction can never drift from what
    the model was validated with; ``torch_free`` does the same steps with Pillow and NumPy (Pillow's
    antialiased bilinear resize, which torchvision's follows), for the backends that need no torch, so a
    prediction does not pay torch's import.

    Args:
        photo: (H, W, 3) uint8 RGB array or an RGB PIL image.
        info: the model's ModelInfo.
        torch_free: resize and normalise without torch.

    Returns:
        (3, h, w) float32 array.
    """
    if torch_free:
        return _preprocess_without_torch(photo, info)
    array = np.array(photo, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on PIL's read-only buffers
    transform = _eval_transform(tuple(info.input_size), tuple(info.mean), tuple(info.std))
    image, _ = transform(array, _NO_MASK)  # (3, h, w)
    return image.numpy()


def _preprocess_without_torch(photo: np.ndarray | Image.Image, info: ModelInfo) -> np.ndarray:
    """:func:`preprocess` in Pillow and NumPy: resize, scale to [0, 1], normalise, channels first."""
    image = photo if isinstance(photo, Image.Image) else Image.fromarray(np.asarray(photo, dtype=np.uint8))
    height, width = (int(v) for v in info.input_size)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255)  # (h, w, 3) in [0, 1]
    mean, std = np.asarray(info.mean, dtype=np.float32), np.asarray(info.std, dtype=np.float32)
    return np.ascontiguousarray(((array - mean) / std).transpose(2, 0, 1))


# ---- what a caller chooses --------------------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    """What a caller chooses for a prediction, built once (by ``cityseg predict``, or the caller) and read by
    each stage: the engine how to run the model, the file loop what to read, the outputs what to write.

    Args:
        backend: ``auto`` (ONNX Runtime on an fp32 ``model.onnx`` when the folder has one, else torch),
            ``torch`` (the safetensors weights), ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO); the last
            two run an exported ONNX file (:data:`cityseg.backends.BACKENDS`).
        onnx_file: with ``onnx`` or ``openvino``, the file to run (a name in the model folder, or a path);
            None: ``model.int8.onnx`` when it is there, else ``model.onnx``.
        threads: CPU threads for the backend; None: the libraries' default (for videos: all cores but one).
        flip: average each photo's logits with its mirror image's (flip test-time augmentation; twice the time).
        scales: rescale factors whose logits are averaged too (multi-scale test-time augmentation,
            :data:`cityseg.inference.TTA_SCALES`); (1.0,) = one scale.
        batch_size: images (or video frames) per forward pass.
        ids: what the label PNGs hold: ``classes``, ``trainids`` or ``labelids`` (:func:`cityseg.outputs.ids_encoder`).
        pairs: the inputs are pair images (photo and colour mask side by side); their photo half is segmented.
        mask_side: which half of a pair holds the mask (``right`` or ``left``).
        skip_bad: skip unreadable inputs (listed in the summary) instead of stopping at the first.
        progress: show a progress bar (on a terminal only).
        overlay_alpha: weight of the class colours in the overlays.
        classes: for a Hub checkpoint that does not name its classes, the class set or class-table file of its
            outputs (``train19`` ...).
    """

    backend: str = DEFAULT_BACKEND
    onnx_file: str | os.PathLike | None = None
    threads: int | None = None
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    batch_size: int = PREDICT_BATCH
    ids: str = ID_KINDS[0]
    pairs: bool = False
    mask_side: str = MASK_SIDES[0]
    skip_bad: bool = False
    progress: bool = True
    overlay_alpha: float = OVERLAY_ALPHA
    classes: str | None = None


# ---- the segmenter ----------------------------------------------------------------------------


@dataclass
class StageTimes:
    """Seconds one batch spent in each stage: preprocessing and the model for the whole batch, resizing per photo."""

    preprocess_s: float = 0.0
    model_s: float = 0.0
    resize_s: list[float] = field(default_factory=list)


class Segmenter:
    """A model ready to segment photos of any size: what it predicts (``info``) and how it runs (``backend``).

    Args:
        backend: a callable from (B, 3, h, w) float32 to (B, C, h, w) logits (one of
            :data:`cityseg.backends.BACKENDS`, or any function).
        info: the model's ModelInfo (input size, normalisation, classes).
        model_dir: the folder it was loaded from, if any.
        flip: also segment the mirror image and average the logits (twice the time).
        scales: also segment the photo rescaled by these factors and average the logits (multi-scale
            test-time augmentation; :data:`cityseg.inference.TTA_SCALES`); (1.0,) = one scale.

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
        scales: tuple[float, ...] = (1.0,),
    ):
        self.backend = backend
        self.info = info
        self.model_dir = model_dir
        self.flip = flip
        self.scales = tuple(float(s) for s in scales)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        backend: str = DEFAULT_BACKEND,
        onnx_file: str | os.PathLike | None = None,
        threads: int | None = None,
        flip: bool = False,
        scales: tuple[float, ...] = (1.0,),
        classes: str | None = None,
    ) -> Segmenter:
        """Load a model: a model folder, a run folder, ``runs/latest``, a built-in model's name or a Hub
        repository ``owner/name[@revision]`` (:func:`cityseg.model_sources.locate_model`).

        Args:
            path: the model.
            backend: ``auto`` (ONNX Runtime on the folder's fp32 ``model.onnx`` when there, else torch: see
                :func:`cityseg.backends.choose_backend`), ``torch`` (the safetensors weights), ``onnx`` (ONNX
                Runtime) or ``openvino`` (OpenVINO); the last two run an exported ONNX file (see
                :func:`cityseg.backends.find_onnx_file`).
            onnx_file: with ``onnx`` or ``openvino``, the file to run (name in the model folder, or a path).
            threads: CPU threads (torch: ``torch.set_num_threads``, a process-wide setting; ONNX Runtime and
                OpenVINO: the model's inference threads). None keeps the libraries' defaults.
            flip: average each photo's logits with its mirror image's (flip test-time augmentation, as
                ``cityseg evaluate --flip``): a little more accurate, twice the time.
            scales: rescale factors whose logits are averaged too (``cityseg predict --tta`` uses
                :data:`cityseg.inference.TTA_SCALES` with flip); the ONNX backends take any size.
            classes: for a Hub checkpoint that does not name its classes, the class set or class-table file
                of its outputs (:func:`cityseg.hub.fetch_model`).

        Raises:
            CitysegError: unknown backend, missing or damaged model files, an ONNX file for other classes.
        """
        if backend not in BACKEND_CHOICES:  # before looking at the path: the clearer of the two mistakes
            raise CitysegError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKEND_CHOICES)}")
        model_dir = resolve_model_dir(path, classes)
        runner, info = load_backend(backend, model_dir, onnx_file, threads)
        return cls(runner, info, model_dir, flip, scales)

    @classmethod
    def from_options(cls, path: str | os.PathLike, options: PredictOptions) -> Segmenter:
        """:meth:`from_pretrained` with the backend, ONNX file, threads, flip and scales of ``options``."""
        return cls.from_pretrained(
            path,
            options.backend,
            options.onnx_file,
            threads=options.threads,
            flip=options.flip,
            scales=options.scales,
            classes=options.classes,
        )

    @property
    def torch_free(self) -> bool:
        """The backend runs without torch (``needs_torch = False``), so the steps around it do too: Pillow's
        resize and NumPy's normalisation in, :func:`~cityseg.inference.edge_labels_at_size` out (the labels
        of :func:`~cityseg.inference.labels_at_size` but where two classes tie to float precision)."""
        return getattr(self.backend, "needs_torch", True) is False and not self.flip and self.scales == (1.0,)

    @property
    def label_resizer(self) -> Callable[[np.ndarray, tuple[int, int]], np.ndarray]:
        """Logits to labels at a photo's size: :func:`~cityseg.inference.edge_labels_at_size` when
        :attr:`torch_free`, else :func:`~cityseg.inference.labels_at_size`."""
        return edge_labels_at_size if self.torch_free else labels_at_size

    @property
    def class_set(self) -> ClassSet:
        """The classes the model predicts (names, colours, label-id mapping)."""
        return self.info.classes

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, h, w) float32 preprocessed images -> (B, C, h, w) float32 logits."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return eval_net(self.backend, flip=self.flip, scales=self.scales)(batch)

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

    def predict_photos(self, photos: Sequence[Photo]) -> tuple[list[np.ndarray], StageTimes]:
        """Segment decoded photos in one batch; returns (labels at each photo's size, the stages' seconds)."""
        times = StageTimes()
        if not photos:
            return [], times
        torch_free = self.torch_free
        resize_labels = self.label_resizer
        began = time.perf_counter()
        batch = np.stack([preprocess(photo.image, self.info, torch_free) for photo in photos])  # (B, 3, h, w)
        times.preprocess_s = time.perf_counter() - began
        began = time.perf_counter()
        logits = self.logits(batch)  # (B, C, h, w)
        times.model_s = time.perf_counter() - began
        labels = []
        for scores, photo in zip(logits, photos, strict=True):
            began = time.perf_counter()
            labels.append(resize_labels(scores, photo.size))  # (H, W) uint8 class indices
            times.resize_s.append(time.perf_counter() - began)
        return labels, times
