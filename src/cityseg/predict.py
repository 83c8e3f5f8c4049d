"""Prediction: segment any photo with a saved model, in PyTorch, ONNX Runtime or OpenVINO.

One image goes through five steps::

    file -> decode_image    images.py: upright RGB; JPEG draft decoding and integer reduction keep huge photos small
         -> preprocess      training's evaluation transform: resize to ModelInfo.input_size, normalise
         -> backend         backends.py, PyTorch, ONNX Runtime or OpenVINO: (B, 3, h, w) float32 -> (B, C, h, w)
         -> labels_at_size  inference.py: logits resized bilinearly towards the photo's size in row bands, argmax
         -> (H, W) uint8 class indices at the photo's own size

:class:`Segmenter` holds a model and its backend and runs those steps; :func:`predict_files` runs it over
files, folders and globs and writes a label PNG, a colour PNG and an overlay per photo.

Example:
    >>> segmenter = Segmenter.from_pretrained("runs/latest")  # doctest: +SKIP
    >>> classes = segmenter.predict("street.jpg")  # (H, W) uint8 train ids  # doctest: +SKIP
    >>> colour = segmenter.class_set.colorize(classes)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cityseg.backends import BACKENDS, load_backend
from cityseg.classes import CLASS_SETS, ClassSet, class_set
from cityseg.defaults import DEFAULT_BACKEND, ID_KINDS, MASK_SIDES, OVERLAY_ALPHA, PREDICT_BATCH
from cityseg.errors import CitysegError
from cityseg.files import atomic_path, ensure_writable_dir
from cityseg.images import Photo, decode_image, expand_inputs
from cityseg.inference import eval_net, labels_at_size
from cityseg.run_folders import resolve_model_dir

if TYPE_CHECKING:
    from cityseg.models import ModelInfo
    from cityseg.video import VideoSummary

OVERLAY_JPEG_QUALITY = 90

_ID_SUFFIX = {"train19": "trainIds", "labelids": "labelIds", "categories": "categoryIds"}


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
    ) -> Segmenter:
        """Load a model folder (``models.save_model`` output), a run folder, or ``runs/latest``.

        Args:
            path: the model.
            backend: ``torch`` (the safetensors weights), ``onnx`` (ONNX Runtime) or ``openvino`` (OpenVINO);
                the last two run an exported ONNX file (see :func:`cityseg.backends.find_onnx_file`).
            onnx_file: with ``onnx`` or ``openvino``, the file to run (name in the model folder, or a path).
            threads: CPU threads (torch: ``torch.set_num_threads``, a process-wide setting; ONNX Runtime and
                OpenVINO: the model's inference threads). None keeps the libraries' defaults.
            flip: average each photo's logits with its mirror image's (flip test-time augmentation, as
                ``cityseg evaluate --flip``): a little more accurate, twice the time.
            scales: rescale factors whose logits are averaged too (``cityseg predict --tta`` uses
                :data:`cityseg.inference.TTA_SCALES` with flip); the ONNX backends take any size.

        Raises:
            CitysegError: unknown backend, missing or damaged model files, an ONNX file for other classes.
        """
        if backend not in BACKENDS:  # before looking at the path: the clearer of the two mistakes
            raise CitysegError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        model_dir = resolve_model_dir(path)
        runner, info = load_backend(backend, model_dir, onnx_file, threads)
        return cls(runner, info, model_dir, flip, scales)

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
        began = time.perf_counter()
        batch = np.stack([preprocess(photo.image, self.info) for photo in photos])  # (B, 3, h, w)
        times.preprocess_s = time.perf_counter() - began
        began = time.perf_counter()
        logits = self.logits(batch)  # (B, C, h, w)
        times.model_s = time.perf_counter() - began
        labels = []
        for scores, photo in zip(logits, photos, strict=True):
            began = time.perf_counter()
            labels.append(labels_at_size(scores, photo.size))  # (H, W) uint8 class indices
            times.resize_s.append(time.perf_counter() - began)
        return labels, times

    def predict_video(self, path: str | os.PathLike, out: str | os.PathLike, **options: Any) -> VideoSummary:
        """Segment a video into ``out/STEM_overlay.mp4``: :func:`cityseg.video.predict_video` (its options)."""
        from cityseg.video import predict_video

        return predict_video(self, path, out, **options)

    def iter_video(self, path: str | os.PathLike, **options: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(RGB frame, labels) of each frame, as :meth:`predict_video` writes: :func:`cityseg.video.iter_video`."""
        from cityseg.video import iter_video

        return iter_video(self, path, **options)


# ---- what the label PNG holds -----------------------------------------------------------------


def ids_encoder(info: ModelInfo, ids: str = ID_KINDS[0]) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """How class indices become the values of the label PNG, and the file-name suffix that says what they are.

    Args:
        info: the model's ModelInfo.
        ids: ``classes`` (the model's class indices: train ids for a train19 model), ``trainids`` (Cityscapes
            train ids, 255 = ignored) or ``labelids`` (official label ids 0..33; a class table's own ids).

    Returns:
        (function from (H, W) class indices to (H, W) uint8 ids, suffix such as ``trainIds``).

    Raises:
        CitysegError: the model's classes cannot be written as the ids asked for (e.g. k-means clusters have
            no official label ids).
    """
    if ids not in ID_KINDS:
        raise CitysegError(f"unknown --ids {ids!r}; choose one of: {', '.join(ID_KINDS)}")
    classes = info.classes
    described = f"{info.num_classes} {info.class_set_name} classes"
    if ids == "classes":
        return (lambda labels: labels), _ID_SUFFIX.get(info.class_set_name, "classIds")
    if ids == "trainids":
        if info.class_set_name == "train19":
            return (lambda labels: labels), "trainIds"
        if info.class_set_name == "labelids":
            train19 = class_set("train19")
            return (lambda labels: train19.from_label_ids(labels)), "trainIds"
        raise CitysegError(
            f"the model predicts {described}, which have no Cityscapes train ids; use --ids classes or --ids labelids"
        )
    if info.class_table is None and (info.class_set_name == "kmeans" or info.class_set_name not in CLASS_SETS):
        raise CitysegError(
            f"the model predicts {described} (colour clusters), which have no official label ids; "
            "use --ids classes (cluster indices), or train with labels.method=palette"
        )
    return classes.to_label_ids, "labelIds"


# ---- predicting files -------------------------------------------------------------------------


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
    latency_ms: list[float] = field(default_factory=list)  # decode + preprocess share + model share + resize back
    model_ms: list[float] = field(default_factory=list)  # model share alone (batch time / batch size)
    videos: list[VideoSummary] = field(default_factory=list)  # one per video (cityseg.video.VideoSummary)

    @property
    def images(self) -> int:
        return len(self.latency_ms)

    def __str__(self) -> str:
        lines = []
        if self.images or not self.videos:
            lines.append(f"predicted {self.images} image(s) with {self.backend} into {self.out_dir}")
        if self.latency_ms:
            median, p90 = np.percentile(self.latency_ms, [50, 90])
            lines.append(
                f"latency per image: median {median:.1f} ms, p90 {p90:.1f} ms (decode, model, resize back; "
                f"model alone: median {np.median(self.model_ms):.1f} ms)"
            )
        lines += [str(video) for video in self.videos]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable {'file' if self.videos else 'image'}(s):")
            lines += [f"  {source}: {reason}" for source, reason in self.skipped]
        return "\n".join(lines)


def predict_files(
    model: str | os.PathLike | Segmenter,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    backend: str = DEFAULT_BACKEND,
    ids: str = ID_KINDS[0],
    pairs: bool = False,
    mask_side: str = "right",
    batch_size: int = PREDICT_BATCH,
    threads: int | None = None,
    onnx_file: str | os.PathLike | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    overlay_alpha: float = OVERLAY_ALPHA,
    flip: bool = False,
    scales: tuple[float, ...] = (1.0,),
    frames: bool = False,
    every: int = 1,
    smooth: float | None = None,
) -> PredictSummary:
    """Segment image files and write, per image, ``STEM_<ids>.png``, ``STEM_color.png`` and ``STEM_overlay.jpg``.

    The label PNG holds one uint8 id per pixel (see :func:`ids_encoder`), the colour PNG the official
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
        threads: CPU threads for the backend (None: the libraries' default, or all cores but one for videos).
        onnx_file: ONNX file to run with ``backend="onnx"`` or ``"openvino"``.
        skip_bad: skip unreadable images (listed in the summary) instead of stopping at the first.
        progress: show a tqdm progress bar.
        overlay_alpha: weight of the colours in the overlay.
        flip: average each photo's logits with its mirror image's (twice the time).
        scales: rescale factors whose logits are averaged too (multi-scale test-time augmentation); ``flip``
            and ``scales`` are ignored for a loaded :class:`Segmenter`, which has its own.
        frames, every, smooth: for videos among the inputs (each gets ``STEM_overlay.mp4``): per-frame label
            PNGs, the model on one frame in ``every``, probability smoothing (:func:`cityseg.video.predict_video`).

    Returns:
        A :class:`PredictSummary` (its ``str`` is the latency summary).
    """
    from cityseg.video import split_video_inputs, video_model_threads  # cityseg.video imports this module

    if batch_size < 1:
        raise CitysegError(f"--batch-size must be at least 1, not {batch_size}")
    if mask_side not in MASK_SIDES:
        raise CitysegError(f"--mask-side must be right or left, not {mask_side!r}")
    inputs, videos = split_video_inputs(inputs, pairs)
    threads = threads or (video_model_threads() if videos else None)  # decoding and encoding need a core too
    loaded = isinstance(model, Segmenter)
    segmenter = model if loaded else Segmenter.from_pretrained(model, backend, onnx_file, threads, flip, scales)
    to_ids, suffix = ids_encoder(segmenter.info, ids)  # fails before any image is read
    paths = expand_inputs(inputs) if inputs or not videos else []
    writer = OutputWriter(ensure_writable_dir(out_dir), segmenter.class_set, to_ids, suffix, overlay_alpha)
    summary = PredictSummary(writer.out_dir, str(segmenter.backend))
    _predict_photo_files(segmenter, paths, writer, summary, batch_size, pairs, mask_side, skip_bad, progress)
    if videos:
        from cityseg.video.pipeline import predict_videos

        settings = dict(ids=ids, frames=frames, every=every, smooth=smooth, alpha=overlay_alpha, batch_size=batch_size)
        predict_videos(segmenter, videos, summary, skip_bad, progress, **settings)
    return summary


def _predict_photo_files(segmenter, paths, writer, summary, batch_size, pairs, mask_side, skip_bad, progress) -> None:
    """The photo half of :func:`predict_files`, a batch at a time; a bar on a terminal only (``disable=None``)."""
    from tqdm.auto import tqdm

    stems = dict(zip(paths, output_stems(paths), strict=True))
    target = tuple(segmenter.info.input_size)
    with tqdm(total=len(paths), desc="predict", unit="image", disable=None if progress and paths else True) as bar:
        for start in range(0, len(paths), batch_size):
            batch = _decode_batch(paths[start : start + batch_size], target, pairs, mask_side, skip_bad, summary, bar)
            if not batch:
                continue
            labels, times = segmenter.predict_photos([photo for _, photo, _ in batch])
            shared_s = (times.preprocess_s + times.model_s) / len(batch)  # the batch's stages, shared out
            for (path, photo, decode_s), classes, resize_s in zip(batch, labels, times.resize_s, strict=True):
                summary.latency_ms.append(1000 * (decode_s + shared_s + resize_s))
                summary.model_ms.append(1000 * times.model_s / len(batch))
                # the overlay needs the photo at its own size
                full = photo.image if photo.full_size else open_photo(path, None, pairs, mask_side).image
                summary.written += writer.write(stems[path], full, classes)
                bar.update(1)


def _decode_batch(
    paths: Sequence[Path],
    target: tuple[int, int],
    pairs: bool,
    mask_side: str,
    skip_bad: bool,
    summary: PredictSummary,
    bar,
) -> list[tuple[Path, Photo, float]]:
    """(path, photo, decode seconds) of each readable file; with ``skip_bad`` the others go to ``summary.skipped``."""
    decoded = []
    for path in paths:
        began = time.perf_counter()
        try:
            photo = open_photo(path, target, pairs=pairs, mask_side=mask_side)
        except CitysegError as exc:
            if not skip_bad:
                raise
            summary.skipped.append((str(path), str(exc)))
            bar.update(1)
            continue
        decoded.append((path, photo, time.perf_counter() - began))
    return decoded


@dataclass
class OutputWriter:
    """Writes the three images of one prediction into ``out_dir``, each atomically.

    ``STEM_<suffix>.png`` (uint8 ids, see :func:`ids_encoder`), ``STEM_color.png`` (the class colours) and
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
        colour = colour_image(labels, self.classes)
        _save(colour, color_path, compress_level=1)  # fast zlib: large label images are mostly flat runs
        _save(Image.blend(photo, colour, self.alpha), overlay_path, quality=OVERLAY_JPEG_QUALITY)
        return [ids_path, color_path, overlay_path]


def colour_image(labels: np.ndarray, classes: ClassSet) -> Image.Image:
    """(H, W) uint8 class indices as RGB in the class colours: the colour PNG, and what overlays blend in."""
    colour = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    colour.putpalette(classes.palette().reshape(-1).tolist())  # colours by table lookup inside PIL
    return colour.convert("RGB")


def _save(image: Image.Image, path: Path, **options: Any) -> None:
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", **options)
    except OSError as exc:
        raise CitysegError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from None
