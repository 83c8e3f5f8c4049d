"""Segmentation metrics from one confusion matrix accumulated over a whole set of images.

Pixel accuracy (aAcc), mean class accuracy (mAcc) and mean IoU (mIoU) are computed from the total
confusion matrix, not averaged per image, as in the Cityscapes benchmark and mmsegmentation. Pixels
labelled ``IGNORE_INDEX`` are left out. The matrix is a torchmetrics state, so under DDP it is summed
across processes before the scores are computed.

Absent classes are reported as absent, never as a perfect or a zero score:

==========================  ==========  ==================  =====================
class ...                   IoU         accuracy (recall)   in the means
==========================  ==========  ==================  =====================
in truth, predicted         TP / union  TP / truth pixels   yes
in truth, never predicted   0           0                   yes
predicted, not in truth     0           NaN (undefined)     mIoU yes, mAcc no
neither                     NaN         NaN                 no
==========================  ==========  ==================  =====================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from cityseg.classes import IGNORE_INDEX


def confusion_scores(confmat: Tensor) -> dict[str, Tensor]:
    """Scores of a (C, C) confusion matrix with rows = truth, columns = prediction.

    Returns:
        ``aAcc``, ``mAcc``, ``mIoU`` (0-dim tensors) and ``iou``, ``acc`` (C,) tensors with NaN where the
        score is undefined (see the module docstring); all float64 (float32 on Apple MPS).
    """
    dtype = torch.float32 if confmat.device.type == "mps" else torch.float64
    cm = confmat.to(dtype)  # (C, C)
    true_positive = cm.diagonal()  # (C,)
    truth = cm.sum(dim=1)  # pixels of each class in the ground truth
    predicted = cm.sum(dim=0)  # pixels predicted as each class
    union = truth + predicted - true_positive
    nan = torch.tensor(float("nan"), dtype=dtype, device=cm.device)
    iou = torch.where(union > 0, true_positive / union.clamp(min=1), nan)
    acc = torch.where(truth > 0, true_positive / truth.clamp(min=1), nan)
    total = cm.sum()
    return {
        "aAcc": torch.where(total > 0, true_positive.sum() / total.clamp(min=1), nan),
        "mAcc": acc.nanmean(),
        "mIoU": iou.nanmean(),
        "iou": iou,
        "acc": acc,
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """aAcc, mAcc, mIoU and per-class IoU / accuracy over everything passed to ``update``.

    A torchmetrics ``MulticlassConfusionMatrix`` (state ``confmat``, summed across DDP processes)
    whose ``compute`` returns segmentation scores instead of the bare matrix.

    Args:
        num_classes: number of classes C.
        ignore_index: target value to leave out (void pixels).
        validate_args: check value ranges on every update (slow; off by default).

    Shape:
        ``update(preds, target)``: preds (B, H, W) class indices or (B, C, H, W) logits,
        target (B, H, W) class indices or ``ignore_index``.

    Example:
        >>> import torch
        >>> metric = SegmentationMetrics(num_classes=3)
        >>> metric.update(torch.tensor([[[0, 1], [2, 2]]]), torch.tensor([[[0, 1], [2, 1]]]))  # one 2x2 image
        >>> round(metric.compute()["mIoU"].item(), 4)  # IoU 1, 1/2 and 1/2
        0.6667
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX, validate_args: bool = False):
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=validate_args)

    def compute(self) -> dict[str, Tensor]:
        """``aAcc``, ``mAcc``, ``mIoU``, ``iou`` (C,), ``acc`` (C,) and the summed ``confmat`` (C, C)."""
        return {**confusion_scores(self.confmat), "confmat": self.confmat.clone()}


def update_confusion(
    metric: SegmentationMetrics, predictions: Tensor | Sequence[Tensor], masks: Tensor | Sequence[Tensor]
) -> list[Tensor]:
    """The scoring step that training's validation, evaluation and the export's checks share: each
    prediction at its mask's size, then its classes, into ``metric``'s confusion matrix.

    Logits smaller or larger than their mask are resized to it (bilinear, ``align_corners=False``) before
    the argmax, so a model run at its input size is scored at the labels' own resolution, never on resized
    labels. Class indices are scored as they are: they must be at their mask's size.

    Args:
        metric: the confusion matrix to add to.
        predictions: (B, C, h, w) floating-point logits or (B, H, W) integer class indices; or, beside a
            list of masks, one such batch of one per mask.
        masks: (B, H, W) class indices (``IGNORE_INDEX`` left out of the scores), or a list of masks of
            different sizes, (H, W) or (1, H, W) each (:func:`cityseg.datasets.collate_pairs`); with one
            batched tensor of predictions, mask ``i`` scores item ``i``.

    Returns:
        The logits scored, at their masks' size: one tensor per mask, or one for a batched mask (none
        for class indices).

    Example:
        >>> metric = SegmentationMetrics(num_classes=2)
        >>> logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2, 1, 2): class 0 left, 1 right
        >>> update_confusion(metric, logits, torch.tensor([[[0, 0, 1, 1]]]))[0].shape  # scored at (1, 4)
        torch.Size([1, 2, 1, 4])
    """
    if isinstance(masks, Tensor):
        pairs = [(predictions, masks)]
    elif isinstance(predictions, Tensor):  # one batch, labels of different sizes: each item at its own
        pairs = [(predictions[index : index + 1], mask) for index, mask in enumerate(masks)]
    else:
        pairs = list(zip(predictions, masks, strict=True))
    scored = []
    for prediction, mask in pairs:
        mask = (mask if mask.ndim == 3 else mask[None]).to(prediction.device).long()  # (B, H, W)
        if prediction.is_floating_point():  # (B, C, h, w) logits
            if prediction.shape[-2:] != mask.shape[-2:]:
                prediction = F.interpolate(prediction, size=mask.shape[-2:], mode="bilinear", align_corners=False)
            scored.append(prediction)
            prediction = prediction.argmax(dim=1)  # (B, H, W)
        metric.update(prediction.long(), mask)
    return scored


def metrics_report(
    confmat: np.ndarray, names: Sequence[str] | None = None, *, annotated_only: bool = False
) -> dict[str, Any]:
    """Turn a (C, C) confusion matrix (rows = truth) into a JSON-ready report.

    Args:
        confmat: summed pixel counts, ``confmat[t, p]`` = pixels of true class t predicted as p.
        names: class names (default ``class 0`` ...); duplicates get ``#index`` appended.
        annotated_only: score only the classes the truth has pixels of. On another dataset than the model's
            own, a class it does not annotate is absent (IoU None, out of the mean), not a 0 for every pixel
            predicted as it; the report says ``"annotated_only": true``.

    Returns:
        ``{"aAcc", "mAcc", "mIoU"}`` floats in [0, 1] (None when undefined), ``"pixels"`` (counted pixels),
        ``"per_class": {name: {"iou", "acc", "present", "pixels", "predicted"}}`` (iou/acc None when
        undefined, ``present`` = the class occurs in the ground truth) and ``"confmat"`` (list of lists).

    Example:
        >>> metrics_report(np.array([[3, 1], [0, 4]]), ["road", "car"])["mIoU"]
        0.775
    """
    matrix = np.asarray(confmat, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    names = _unique_names(names, matrix.shape[0])
    scores = {k: v.numpy() for k, v in confusion_scores(torch.from_numpy(matrix)).items()}
    truth, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    if annotated_only:
        scores["iou"] = np.where(truth > 0, scores["iou"], np.nan)
        scores["mIoU"] = np.nanmean(scores["iou"]) if (truth > 0).any() else np.nan
    per_class = {
        name: {
            "iou": _number(scores["iou"][i]),
            "acc": _number(scores["acc"][i]),
            "present": bool(truth[i] > 0),
            "pixels": int(truth[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(names)
    }
    report = {
        "aAcc": _number(scores["aAcc"]),
        "mAcc": _number(scores["mAcc"]),
        "mIoU": _number(scores["mIoU"]),
        "pixels": int(matrix.sum()),
        "per_class": per_class,
        "confmat": matrix.tolist(),
    }
    return {**report, "annotated_only": True} if annotated_only else report


def _number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _unique_names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [f"class {i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"{len(names)} class names for a {count}x{count} confusion matrix")
    seen = {n for n in names if list(names).count(n) > 1}
    return [f"{n}#{i}" if n in seen else str(n) for i, n in enumerate(names)]


def format_table(report: dict[str, Any]) -> str:
    """An aligned text table of a :func:`metrics_report`: per-class IoU and accuracy in percent, then the means.

    Example::

        class      IoU %   Acc %     pixels
        road       97.12   98.50    1234567
        car            -       -          0   (absent)
        ---------------------------------
        mIoU 45.20   mAcc 55.10   aAcc 90.30
    """
    rows = [("class", "IoU %", "Acc %", "pixels", "")]
    for name, entry in report.get("per_class", {}).items():
        note = "" if entry.get("present", True) else ("(absent)" if not entry.get("predicted") else "(not in truth)")
        note = "(absent)" if note and report.get("annotated_only") else note
        rows.append((name, _percent(entry.get("iou")), _percent(entry.get("acc")), str(entry.get("pixels", "")), note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip()
        for r in rows
    ]
    rule = "-" * max(len(line) for line in lines)
    summary = "   ".join(f"{key} {_percent(report.get(key))}" for key in ("mIoU", "mAcc", "aAcc"))
    return "\n".join([*lines, rule, summary])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
