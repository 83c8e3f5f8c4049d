"""Export: a saved model as ONNX, fp32 and int8, each checked against its reference before it is written.

``export_onnx(model)`` writes ``model.onnx`` into the model folder (see :mod:`cityseg.backends` for the
layout): an fp32 graph with dynamic batch, height and width, exported in eval mode so every BatchNorm
is folded into the convolution before it. With ``quantize="int8"`` it also writes ``model.int8.onnx``:
static int8 quantisation by ONNX Runtime (per-channel weights, QDQ format, uint8 activations and int8
weights, the pairing x86 kernels run fastest), calibrated on real photos. What the caller chooses is one
:class:`ExportOptions`. If quantising every layer
costs too much agreement, the export tries again with the encoder left in fp32: on the cpu-hour model the
encoder's int8 layers cost 2.6% of the pixels and the decoder's, where most of the arithmetic is, 0.2%
(BENCHMARKS.md, inference).

Nothing is written until the checks pass, and then each file appears whole (temporary file, rename):

* fp32: the largest logit difference between ONNX Runtime and PyTorch on held-out images, and their
  argmax agreement, at the model's size and at another size (the dynamic axes work);
* int8: pixel agreement of its argmax with the fp32 model's, mIoU of int8 against the fp32 predictions,
  and, for pair images (``pairs=True``), the mIoU of both models against the true labels;
* either model agreeing on fewer than ``min_agreement`` of the pixels is refused with a CitysegError.

The held-out images never take part in calibration: the folder is shuffled (seeded) and split.

Example:
    >>> report = export_onnx("runs/latest", ExportOptions(quantize="int8", calibration="photos/"))  # doctest: +SKIP
    >>> print(report)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.backends import EXPORT_REPORT_FILE, ONNX_FILE, OnnxBackend
from cityseg.classes import CLASS_SETS
from cityseg.defaults import (
    CALIBRATION_IMAGES,
    CALIBRATION_METHODS,
    CHECK_IMAGES,
    DEFAULT_OPSET,
    MASK_SIDES,
    MIN_AGREEMENT,
    QUANT_FORMATS,
    QUANTIZE,
)
from cityseg.defaults import FORMATS as FORMATS  # not used here; importable from cityseg.export as before
from cityseg.engine import preprocess
from cityseg.errors import CitysegError
from cityseg.files import atomic_path
from cityseg.images import decode_image, expand_inputs
from cityseg.inference import labels_at_size
from cityseg.model_sources import locate_model
from cityseg.onnx_graphs import QuantOptions, quantize_int8, torch_to_onnx

ENCODER_NODES = ("/encoder",)  # node-name prefix of an smp network's encoder in the exported graph


@dataclass(frozen=True)
class ExportOptions:
    """What a caller chooses for an export (``cityseg export``'s flags).

    Args:
        quantize: ``None`` or ``"int8"``.
        calibration: a folder of photos (or of pair images with ``pairs=True``); needed for int8.
        pairs: the calibration images are pairs; their photo half is used and their masks give true labels.
        mask_side: which half of a pair is the mask.
        calibration_images: how many images calibrate the int8 ranges.
        check_images: how many held-out images the checks run on.
        min_agreement: least pixel agreement (fraction) with the reference model; below it nothing is written.
        opset: ONNX opset.
        per_channel: one int8 scale per output channel of each weight (else one per tensor).
        reduce_range: 7-bit weights (for CPUs whose u8 x s8 products can overflow: pre-VNNI x86).
        quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ONNX Runtime) or ``qoperator``.
        calibrate_method: ``minmax``, ``percentile`` or ``entropy``.
        keep_fp32: node-name prefixes left in fp32 (e.g. ``/encoder``, ``/segmentation_head``). None (the
            default) quantises every layer and, if that agrees on fewer than ``min_agreement`` of the pixels,
            tries again with the encoder in fp32 (``ENCODER_NODES``): its layers, depthwise convolutions above
            all, are the ones int8 hurts most, while most of the arithmetic is in the decoder.
        seed: shuffles the folder before it is split into calibration and held-out images.
    """

    quantize: str | None = None
    calibration: str | os.PathLike | None = None
    pairs: bool = False
    mask_side: str = MASK_SIDES[0]
    calibration_images: int = CALIBRATION_IMAGES
    check_images: int = CHECK_IMAGES
    min_agreement: float = MIN_AGREEMENT
    opset: int = DEFAULT_OPSET
    per_channel: bool = True
    reduce_range: bool = False
    quant_format: str = QUANT_FORMATS[0]
    calibrate_method: str = CALIBRATION_METHODS[0]
    keep_fp32: tuple[str, ...] | None = None
    seed: int = 0

    def quant_options(self, keep_fp32: tuple[str, ...] = ()) -> QuantOptions:
        """The quantiser's options, with ``keep_fp32`` (one plan of layers kept in fp32) left unquantised."""
        return QuantOptions(
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            quant_format=self.quant_format,
            calibrate_method=self.calibrate_method,
            keep_fp32=keep_fp32,
        )

    def fp32_plans(self) -> list[tuple[str, ...]]:
        """The layers kept in fp32, plan by plan: ``keep_fp32`` alone, else every layer int8 then the encoder fp32."""
        return [tuple(self.keep_fp32)] if self.keep_fp32 is not None else [(), ENCODER_NODES]


@dataclass
class ExportReport:
    """Where the files went and the figures of the checks (fractions in [0, 1]; logits in their own units)."""

    model_dir: str
    onnx: str
    opset: int
    check_images: int
    fp32_max_logit_diff: float
    fp32_agreement: float
    fp32_other_size: tuple[int, int]
    fp32_other_size_max_diff: float
    int8: str | None = None
    calibration: str | None = None
    calibration_images: int = 0
    quantization: dict[str, Any] = field(default_factory=dict)
    int8_agreement: float | None = None
    int8_miou_vs_fp32: float | None = None  # mIoU of the int8 argmax, scored against the fp32 argmax
    truth_images: int = 0
    fp32_miou: float | None = None  # against the true labels of pair images
    int8_miou: float | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable images left out of calibration and checks
    int8_refused: list[str] = field(default_factory=list)  # quantisations tried first and why they were not kept

    @property
    def miou_delta(self) -> float | None:
        if self.fp32_miou is None or self.int8_miou is None:
            return None
        return self.int8_miou - self.fp32_miou

    def __str__(self) -> str:
        lines = [
            f"fp32 ONNX {self.onnx}: largest logit difference to PyTorch {self.fp32_max_logit_diff:.2e}, "
            f"argmax agreement {100 * self.fp32_agreement:.3f}% on {self.check_images} held-out image(s); "
            f"at {self.fp32_other_size[0]}x{self.fp32_other_size[1]}: {self.fp32_other_size_max_diff:.2e}",
        ]
        if self.int8 is not None:
            lines += self.int8_refused
            kept = self.quantization.get("kept_fp32_prefixes") or []
            scope = f" with {', '.join(kept)} kept in fp32" if kept else ""
            lines.append(
                f"int8 ONNX {self.int8}{scope}: argmax agreement with fp32 {100 * self.int8_agreement:.2f}%, "
                f"mIoU against the fp32 predictions {100 * self.int8_miou_vs_fp32:.2f}% "
                f"(calibrated on {self.calibration_images} image(s) of {self.calibration})"
            )
            if self.miou_delta is not None:
                lines.append(
                    f"mIoU against the true labels of {self.truth_images} pair(s): fp32 {100 * self.fp32_miou:.2f}%, "
                    f"int8 {100 * self.int8_miou:.2f}% ({100 * self.miou_delta:+.2f} points)"
                )
        if self.skipped:
            lines.append(f"left out {len(self.skipped)} unreadable image(s), e.g. {self.skipped[0]}")
        return "\n".join(lines)


# ---- images for calibration and checks --------------------------------------------------------


@dataclass
class CalibrationSet:
    """Preprocessed images for calibration and for the checks, disjoint, and the true labels of the latter."""

    calibration: np.ndarray  # (N, 3, h, w) float32, preprocessed
    check: np.ndarray  # (M, 3, h, w) float32, preprocessed, never used for calibration
    truths: list[np.ndarray]  # (H, W) uint8 true class indices of the check images (pairs with a labeller)
    skipped: list[str]


def _list_images(folder: str | os.PathLike, pairs: bool) -> list[Path]:
    if not Path(folder).is_dir():
        raise CitysegError(f"calibration folder {folder} not found; pass a folder of photos (or pairs with --pairs)")
    if pairs:
        from cityseg.pairs import discover

        return [path for paths in discover(folder).values() for path in paths]
    return expand_inputs([folder])


def _labeller_for(model_dir: Path | None, info):
    """What turns a pair's colour mask into the model's classes: the run's own labeller, or the palette one."""
    from cityseg.labels import PaletteLabeller, load_labeller

    saved = model_dir.parent / "labeller.json" if model_dir else None  # the run's labeller, beside RUN/model
    if saved is not None and saved.is_file():
        labeller = load_labeller(saved)
        if tuple(labeller.class_set.names) == tuple(info.names):
            return labeller
    if info.class_set_name in CLASS_SETS:
        return PaletteLabeller(info.class_set_name)
    return None  # k-means clusters without their fitted centres


def load_calibration_set(info, options: ExportOptions | None = None, model_dir: Path | None = None) -> CalibrationSet:
    """Images to calibrate and check with: the folder shuffled (seeded), the first held out for the checks.

    Unreadable images are skipped (listed) and replaced by the next ones. At most a quarter of the folder
    is held out, so a small folder still leaves most of its images for calibration.

    Args:
        info: the model's ModelInfo (input size and normalisation).
        options: the folder (``calibration``: photos, or pair images with ``pairs``, whose masks give the true
            labels; None gives two seeded noise images to check fp32 against PyTorch, no calibration
            possible), ``mask_side``, ``calibration_images`` and ``check_images`` (how many of each) and the
            shuffle's ``seed``.
        model_dir: the model folder; ``model_dir/../labeller.json`` (a run's labeller) labels pair masks.
    """
    options = options or ExportOptions()
    folder, pairs, seed = options.calibration, options.pairs, options.seed
    size = tuple(info.input_size)
    if folder is None:  # fp32-only export without photos: seeded noise images still compare the two runtimes
        noise = np.random.default_rng(seed).standard_normal((2, 3, *size)).astype(np.float32)
        return CalibrationSet(noise[:0], noise, [], [])
    paths = _list_images(folder, pairs)
    if len(paths) < 2:
        raise CitysegError(f"{folder} holds {len(paths)} image(s); export needs at least 2 (to calibrate and check)")
    random.Random(seed).shuffle(paths)
    wanted_check = max(1, min(options.check_images, len(paths) // 4))
    labeller = _labeller_for(model_dir, info) if pairs else None  # no labeller: no truth, int8 vs fp32 only
    check: list[np.ndarray] = []
    calibrate: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        if len(check) == wanted_check and len(calibrate) == options.calibration_images:
            break
        try:
            if pairs:
                from cityseg.pairs import read_pair

                photo, mask = read_pair(path, options.mask_side)
            else:
                photo, mask = decode_image(path, size).image, None
            if len(check) < wanted_check and labeller is not None:
                truths.append(labeller.label(mask, source=str(path)))
        except CitysegError as exc:
            skipped.append(f"{path} ({exc})")
            continue
        (check if len(check) < wanted_check else calibrate).append(preprocess(photo, info))
    if not check or not calibrate:
        raise CitysegError(f"fewer than 2 readable images in {folder}; add photos to calibrate and check with")
    return CalibrationSet(np.stack(calibrate), np.stack(check), truths, skipped)


# ---- the checks -------------------------------------------------------------------------------


def _run(model, images: np.ndarray, batch: int = 2) -> np.ndarray:
    """Logits of ``images`` (N, 3, h, w), ``batch`` at a time (several per run: the batch axis is dynamic)."""
    return np.concatenate([model(images[i : i + batch]) for i in range(0, len(images), batch)])


def _torch_logits(net, images: np.ndarray, batch: int = 2) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate(
            [net(torch.from_numpy(images[i : i + batch])).float().numpy() for i in range(0, len(images), batch)]
        )


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == reference.argmax(axis=1)).mean())


def miou(predictions: list[np.ndarray], truths: list[np.ndarray], num_classes: int) -> float:
    """mIoU of (H, W) class-index maps against truths (IGNORE_INDEX left out), over the whole set.

    The maps are scored by :func:`cityseg.metrics.update_confusion`, as evaluation and training score logits.
    """
    import torch

    from cityseg.metrics import SegmentationMetrics, update_confusion

    metric = SegmentationMetrics(num_classes=num_classes)
    update_confusion(
        metric, [torch.from_numpy(p[None]) for p in predictions], [torch.from_numpy(t[None]) for t in truths]
    )  # (1, H, W) each
    value = float(metric.compute()["mIoU"])
    return 0.0 if np.isnan(value) else value


def _other_size(size: tuple[int, int]) -> tuple[int, int]:
    """Another valid input size (multiples of 32, the deepest encoder stride) to exercise the dynamic axes."""
    return (size[0] + 32, size[1] + 64)


# ---- export -----------------------------------------------------------------------------------


def export_onnx(
    model: str | os.PathLike, options: ExportOptions | None = None, out: str | os.PathLike | None = None
) -> ExportReport:
    """Export a model to ONNX (and int8), check it, and write it only if it agrees with its reference.

    Args:
        model: a model folder, run folder or ``runs/latest``.
        options: int8 or not, the calibration photos, the checks' threshold, the quantiser's settings ...
            (default: ``ExportOptions()``, an fp32 export).
        out: the fp32 file (default ``MODEL/model.onnx``); the int8 one goes beside it as ``*.int8.onnx``.

    Returns:
        An :class:`ExportReport`; its ``str`` is the printed summary. It is also saved as ``export.json``.

    Raises:
        CitysegError: bad settings or images, an export or quantisation failure, or a model below
            ``options.min_agreement``.
    """
    from cityseg.models import load_model

    options = options or ExportOptions()
    _check_settings(options)
    source = locate_model(model)
    if out is None and source.read_only:
        raise CitysegError(
            f"{model} is a {'built-in' if source.kind == 'builtin' else 'Hub'} model, read-only here; "
            f"pass --out FILE.onnx (e.g. --out {source.folder.name}.onnx)"
        )
    model_dir = source.folder
    net, info = load_model(model_dir)
    fp32_path, int8_path = _output_paths(out, model_dir)
    images = load_calibration_set(info, options, model_dir)
    work_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=_writable_parent(fp32_path)))
    try:
        fp32_tmp, int8_tmp = work_dir / "model.onnx", work_dir / "model.int8.onnx"
        report, fp32_logits = _export_fp32(net, info, fp32_tmp, images, options)
        report.model_dir, report.onnx = str(model_dir), str(fp32_path)  # where it goes once checked
        _require(report.fp32_agreement, options.min_agreement, "fp32 ONNX", "PyTorch", len(images.check))
        if options.quantize:
            report.int8, report.calibration = str(int8_path), str(options.calibration)
            _export_int8(report, (fp32_tmp, int8_tmp), fp32_logits, images, options)

        _install(fp32_tmp, fp32_path)
        if options.quantize:
            _install(int8_tmp, int8_path)
        _record(fp32_path.parent / EXPORT_REPORT_FILE, report)
        return report
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _output_paths(out: str | os.PathLike | None, model_dir: Path) -> tuple[Path, Path]:
    """The fp32 file (``out``, default ``MODEL/model.onnx``) and the int8 one beside it."""
    fp32_path = Path(out) if out is not None else model_dir / ONNX_FILE
    if fp32_path.suffix != ".onnx":
        raise CitysegError(f"--out {fp32_path} should end in .onnx")
    return fp32_path, fp32_path.with_name(f"{fp32_path.stem}.int8.onnx")


def _check_settings(options: ExportOptions) -> None:
    """Refuse bad export settings before anything is loaded."""
    from cityseg.extras import require

    require("onnx", "ONNX export")  # before any work: the quicker mistake to fix
    quantize, calibration, min_agreement = options.quantize, options.calibration, options.min_agreement
    calibrate_method, quant_format = options.calibrate_method, options.quant_format
    if quantize not in (None, *QUANTIZE):
        raise CitysegError(f"unknown --quantize {quantize!r}; choose: {', '.join(QUANTIZE)}")
    if quantize and calibration is None:
        raise CitysegError("int8 quantisation needs --calibration DIR: a folder of real photos (or pairs with --pairs)")
    if not 0 <= min_agreement <= 1:
        raise CitysegError(f"--min-agreement must be a percentage between 0 and 100, not {100 * min_agreement:g}")
    if calibrate_method not in CALIBRATION_METHODS:
        raise CitysegError(f"unknown calibration method {calibrate_method!r}; choose: {', '.join(CALIBRATION_METHODS)}")
    if quant_format not in QUANT_FORMATS:
        raise CitysegError(f"unknown quantisation format {quant_format!r}; choose: {', '.join(QUANT_FORMATS)}")
    if min(options.calibration_images, options.check_images) < 1:
        raise CitysegError("--calibration-images and --check-images must be at least 1")


def _export_fp32(
    net, info, fp32_tmp: Path, images: CalibrationSet, options: ExportOptions
) -> tuple[ExportReport, np.ndarray]:
    """Write the fp32 graph to ``fp32_tmp`` and compare it with PyTorch: (the report so far, its logits)."""
    opset, seed = options.opset, options.seed
    torch_to_onnx(net, fp32_tmp, images.check[:1], opset)
    fp32 = OnnxBackend(fp32_tmp)
    reference = _torch_logits(net, images.check)  # (M, C, h, w)
    fp32_logits = _run(fp32, images.check)
    other = _other_size(tuple(info.input_size))
    probe = np.random.default_rng(seed).standard_normal((1, 3, *other)).astype(np.float32)
    report = ExportReport(
        model_dir="",
        onnx=str(fp32_tmp),
        opset=opset,
        check_images=len(images.check),
        fp32_max_logit_diff=float(np.abs(fp32_logits - reference).max()),
        fp32_agreement=agreement(fp32_logits, reference),
        fp32_other_size=other,
        fp32_other_size_max_diff=float(np.abs(fp32(probe) - _torch_logits(net, probe)).max()),
        skipped=images.skipped,
    )
    return report, fp32_logits


def _export_int8(
    report: ExportReport,
    files: tuple[Path, Path],
    fp32_logits: np.ndarray,
    images: CalibrationSet,
    options: ExportOptions,
) -> None:
    """Quantise ``files`` (fp32, int8) by each plan of layers kept in fp32 until one agrees well enough.

    The last plan tried is kept and scored (:func:`_score_int8`); below ``min_agreement`` it is refused.
    """
    fp32_tmp, int8_tmp = files
    plans, min_agreement = options.fp32_plans(), options.min_agreement
    for plan in plans:
        report.quantization = quantize_int8(fp32_tmp, int8_tmp, images.calibration, options.quant_options(plan))
        int8_logits = _run(OnnxBackend(int8_tmp), images.check)
        share = agreement(int8_logits, fp32_logits)
        if share >= min_agreement or plan is plans[-1]:
            break
        report.int8_refused.append(
            f"int8 of every layer: argmax agreement with fp32 only {100 * share:.2f}%, "
            f"below --min-agreement {100 * min_agreement:g}%; trying again with the encoder in fp32"
        )
    _score_int8(report, fp32_logits, int8_logits, images, fp32_logits.shape[1])
    _require(report.int8_agreement, min_agreement, "int8 ONNX", "fp32", len(images.check))


def _score_int8(
    report: ExportReport, fp32_logits: np.ndarray, int8_logits: np.ndarray, images: CalibrationSet, num_classes: int
) -> None:
    """The int8 figures of the report: agreement and mIoU against fp32, and both against the truths if any."""
    fp32_classes = list(fp32_logits.argmax(axis=1).astype(np.uint8))
    int8_classes = list(int8_logits.argmax(axis=1).astype(np.uint8))
    report.calibration_images = len(images.calibration)
    report.int8_agreement = agreement(int8_logits, fp32_logits)
    report.int8_miou_vs_fp32 = miou(int8_classes, fp32_classes, num_classes)
    if images.truths:
        report.truth_images = len(images.truths)
        report.fp32_miou = miou(_at_truth_size(fp32_logits, images.truths), images.truths, num_classes)
        report.int8_miou = miou(_at_truth_size(int8_logits, images.truths), images.truths, num_classes)


def _at_truth_size(logits: np.ndarray, truths: list[np.ndarray]) -> list[np.ndarray]:
    return [labels_at_size(scores, truth.shape) for scores, truth in zip(logits, truths, strict=True)]


def _require(share: float, minimum: float, what: str, reference: str, images: int) -> None:
    if share < minimum:
        raise CitysegError(
            f"{what} agrees with {reference} on only {100 * share:.2f}% of pixels of {images} held-out image(s), "
            f"below --min-agreement {100 * minimum:g}%; nothing was written (calibrate on more photos like the ones "
            "you will segment, keep more layers in fp32 with --keep-fp32 PREFIX, or lower --min-agreement)"
        )


def _writable_parent(path: Path) -> Path:
    from cityseg.files import ensure_writable_dir

    return ensure_writable_dir(path.parent)


def _install(source: Path, target: Path) -> None:
    """Move a checked file into place: a rename within one folder, so readers see the old file or the new one."""
    try:
        os.replace(source, target)
    except OSError as exc:
        raise CitysegError(f"cannot write {target}: {exc.strerror or exc}; check free space and permissions") from None


def _record(path: Path, report: ExportReport) -> None:
    """Add this export's figures to ``export.json`` (keyed by file name; earlier entries for other files stay)."""
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        entries = {}  # a damaged record is rewritten from this export
    values = asdict(report)
    entries[Path(report.onnx).name] = {
        k: v for k, v in values.items() if not k.startswith("int8") and k != "quantization"
    }
    if report.int8 is not None:
        entries[Path(report.int8).name] = values | {"miou_delta": report.miou_delta}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entries, indent=2, default=str) + "\n")
