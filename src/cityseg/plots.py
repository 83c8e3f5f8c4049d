"""Figures of a run: training curves, prediction grids, confusion matrix, per-class IoU and the labelling figure.

Every function draws on its own matplotlib ``Figure`` (no pyplot state, no display needed: the Agg
renderer), writes a PNG through :func:`cityseg.files.atomic_path` and returns its path. matplotlib is
imported inside the functions, so importing this module is instant.

Images are (H, W, 3) uint8 RGB arrays (float arrays in [0, 1] and (3, H, W) tensors are accepted too);
masks are (H, W) class indices, ``IGNORE_INDEX`` drawn black.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.classes import IGNORE_INDEX
from cityseg.errors import CitysegError
from cityseg.files import atomic_path

DPI = 100
PANEL_INCHES = 3.2  # width of one image panel in the grids


# ---- training curves --------------------------------------------------------------------------

# figure file -> (y label, which logged columns belong on it)
_HISTORY_FIGURES = {
    "loss.png": ("loss", lambda name: "loss" in name.lower()),
    "accuracy.png": ("accuracy", lambda name: name.lower().endswith("acc")),
    "miou.png": ("mIoU", lambda name: "iou" in name.lower()),
}


def plot_history(history_csv: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Plot loss, accuracy and mIoU per epoch for training and validation.

    Reads either a clean per-epoch CSV (``epoch, train_loss, val_loss, train_acc, val_acc, val_mIoU``) or
    Lightning's CSVLogger ``metrics.csv`` (one row per logging step, blanks where a metric was not logged,
    ``*_step`` / ``*_epoch`` suffixes): each metric takes its last value logged in each epoch, ``*_epoch``
    columns are preferred to ``*_step`` ones, NaN and blanks are skipped.

    Args:
        history_csv: the CSV file.
        out_dir: folder for ``loss.png``, ``accuracy.png`` and ``miou.png`` (a figure with no data is skipped).

    Returns:
        The figures written.

    Raises:
        CitysegError: the CSV is missing or has no numeric metric columns.
    """
    series = read_history(history_csv)
    written = []
    for filename, (ylabel, belongs) in _HISTORY_FIGURES.items():
        chosen = {name: points for name, points in series.items() if belongs(name)}
        if chosen:
            written.append(_plot_curves(chosen, ylabel, Path(out_dir) / filename))
    return written


def read_history(history_csv: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """Metric name -> [(epoch, value), ...] from a history or Lightning metrics CSV (see :func:`plot_history`)."""
    path = Path(history_csv)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise CitysegError(
            f"cannot read training history {path}: {exc.strerror or exc}; check the run folder"
        ) from None
    columns = [c for c in (rows[0].keys() if rows else []) if c and c not in ("epoch", "step")]
    # Lightning logs train_loss_step every few steps and train_loss_epoch once per epoch: keep the epoch one
    names = {c: c.removesuffix("_epoch") for c in columns if not (c.endswith("_step") and f"{c[:-5]}_epoch" in columns)}
    names = {c: n.removesuffix("_step") for c, n in names.items()}
    series: dict[str, dict[float, float]] = {}
    for index, row in enumerate(rows):
        epoch = _float(row.get("epoch"))
        epoch = float(index) if epoch is None else epoch
        for column, name in names.items():
            value = _float(row.get(column))
            if value is not None:
                series.setdefault(name, {})[epoch] = value  # later rows win: the epoch's last value
    if not series:
        raise CitysegError(f"training history {path} has no metric values; is it a metrics CSV of a run?")
    return {name: sorted(points.items()) for name, points in series.items()}


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _plot_curves(series: dict[str, list[tuple[float, float]]], ylabel: str, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6, 4), dpi=DPI)
    ax = fig.add_subplot()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    for name, points in sorted(series.items()):
        epochs, values = zip(*points, strict=True)
        style = "--" if name.startswith("train") else "-"  # validation solid, training dashed
        ax.plot(epochs, values, style, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


# ---- images and masks -------------------------------------------------------------------------


def plot_predictions(
    photos: Sequence[Any],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    class_set: Any,
    path: str | os.PathLike,
) -> Path:
    """A grid with one row per image: photo, ground truth and prediction in the class colours.

    Args:
        photos: N images (H, W, 3).
        truths, preds: N class-index masks (H, W); ``IGNORE_INDEX`` in the truth is drawn black.
        class_set: a ClassSet (or anything with ``names``, ``colors`` and ``colorize``).
        path: the PNG to write.
    """
    if not (len(photos) == len(truths) == len(preds)) or len(photos) == 0:
        raise ValueError(
            f"need as many photos, truths and predictions (got {len(photos)}, {len(truths)}, {len(preds)})"
        )
    rows = [
        [
            ("photo", _rgb(p)),
            ("ground truth", class_set.colorize(_mask(t))),
            ("prediction", class_set.colorize(_mask(q))),
        ]
        for p, t, q in zip(photos, truths, preds, strict=True)
    ]
    shown = np.unique(np.concatenate([_mask(m).ravel() for m in (*truths, *preds)]))
    return _image_grid(rows, class_set, shown, Path(path))


def plot_label_figure(
    rows: Sequence[tuple[Any, np.ndarray, np.ndarray]],
    class_set: Any,
    path: str | os.PathLike,
) -> Path:
    """The labelling figure: per row the photo, its colour mask, and the label map drawn in the class colours.

    Args:
        rows: N tuples ``(photo (H, W, 3), colour mask (H, W, 3), labels (H, W) class indices)``.
        class_set: the labeller's class set (``names``, ``colors``, ``colorize``).
        path: the PNG to write.
    """
    if len(rows) == 0:
        raise ValueError("plot_label_figure needs at least one (photo, mask, labels) row")
    grid = [
        [("photo", _rgb(photo)), ("colour mask", _rgb(mask)), ("labels", class_set.colorize(_mask(labels)))]
        for photo, mask, labels in rows
    ]
    shown = np.unique(np.concatenate([_mask(labels).ravel() for _, _, labels in rows]))
    return _image_grid(grid, class_set, shown, Path(path))


def _image_grid(rows: list[list[tuple[str, np.ndarray]]], class_set: Any, shown: np.ndarray, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    first = rows[0][0][1]
    aspect = first.shape[0] / first.shape[1]
    columns = len(rows[0])
    legend = [
        Patch(facecolor=np.asarray(class_set.colors[i]) / 255, edgecolor="black", label=class_set.names[i])
        for i in shown.tolist()
        if i < len(class_set.names)
    ]
    if IGNORE_INDEX in shown:
        legend.append(Patch(facecolor="black", edgecolor="black", label="ignored (void)"))
    legend_inches = 0.2 * math.ceil(len(legend) / 4) + 0.1 if legend else 0.0
    height = len(rows) * (PANEL_INCHES * aspect + 0.3) + legend_inches
    fig = Figure(figsize=(columns * PANEL_INCHES, height), dpi=DPI)
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c, (title, image) in enumerate(row):
            axes[r][c].imshow(image, interpolation="nearest")
            axes[r][c].set_axis_off()
            if r == 0:
                axes[r][c].set_title(title)
    if legend:
        fig.legend(handles=legend, loc="lower center", ncol=min(4, len(legend)), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1), h_pad=0.5, w_pad=0.5)
    return _save(fig, path)


def _rgb(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from uint8 / [0, 1] float arrays or (3, H, W) tensors."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)  # (3, H, W) -> (H, W, 3)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.dtype != np.uint8:
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    return array


def _mask(mask: Any) -> np.ndarray:
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    return np.clip(array, 0, IGNORE_INDEX).astype(np.uint8)


# ---- scores -----------------------------------------------------------------------------------


def plot_confusion(confmat: np.ndarray, names: Sequence[str], path: str | os.PathLike) -> Path:
    """The confusion matrix normalised by row (rows = truth: each row shows where that class's pixels went).

    Classes absent from the truth have an empty (blank) row. Cells carry percentages when there are
    at most 20 classes.
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(confmat, dtype=np.float64)
    count = matrix.shape[0]
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(totals > 0, matrix / totals, np.nan)
    side = max(4.0, 0.45 * count + 2.5)
    fig = Figure(figsize=(side + 1, side), dpi=DPI)
    ax = fig.add_subplot()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(count), labels=list(names), rotation=90, fontsize="small")
    ax.set_yticks(range(count), labels=list(names), fontsize="small")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if count <= 20:
        for t in range(count):
            for p in range(count):
                if not np.isnan(normalised[t, p]) and normalised[t, p] >= 0.005:
                    colour = "white" if normalised[t, p] > 0.5 else "black"
                    ax.text(p, t, f"{100 * normalised[t, p]:.0f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title("confusion matrix (% of each true class)")
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_class_iou(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Horizontal bars of per-class IoU from a ``metrics_report`` dict, with the mIoU as a dashed line.

    Classes absent from both truth and prediction (IoU ``None``) are listed as ``absent`` without a bar.
    """
    return _save(class_iou_figure(report), Path(path))


def class_iou_figure(report: dict[str, Any]):
    """The matplotlib Figure of :func:`plot_class_iou`, not yet saved."""
    from matplotlib.figure import Figure

    entries = list(report.get("per_class", {}).items())
    if not entries:
        raise ValueError("report has no per_class entries")
    names = [name for name, _ in entries]
    values = [entry.get("iou") for _, entry in entries]
    fig = Figure(figsize=(6, max(2.5, 0.3 * len(names) + 1)), dpi=DPI)
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    percents = [None if v is None else 100 * v for v in values]
    ax.barh(positions, [0 if v is None else v for v in percents], color="tab:blue")
    for y, value in zip(positions, percents, strict=True):
        label = "absent" if value is None else f"{value:.1f}"
        ax.text(1 if value is None else value + 1, y, label, va="center", fontsize="small")
    if report.get("mIoU") is not None:
        miou = 100 * report["mIoU"]
        ax.axvline(miou, color="tab:red", linestyle="--", label=f"mIoU {miou:.1f}")
        # above the axes, beside the title: inside them it covered the last bars and their values
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, borderaxespad=0.2)
    ax.set_yticks(positions, labels=names, fontsize="small")
    ax.invert_yaxis()  # first class on top
    ax.set_xlim(0, 110)
    ax.set_xlabel("IoU %")
    ax.set_title("IoU per class", loc="left")
    fig.tight_layout()
    return fig


def plot_transfer(table: dict[str, Any], path: str | os.PathLike) -> Path:
    """A model's transfer table as a heat map: datasets across, mIoU, aAcc and each class's IoU down.

    ``table`` is :meth:`cityseg.transfer.TransferTable.to_dict`. Cells carry the percentages; a class a dataset
    has no pixel of is a grey cell marked ``absent``, not a 0.
    """
    return _save(transfer_figure(table), Path(path))


def transfer_figure(table: dict[str, Any]):
    """The matplotlib Figure of :func:`plot_transfer`, not yet saved."""
    from matplotlib.figure import Figure

    columns = table["columns"]
    if not columns:
        raise ValueError("the transfer table has no dataset")
    rows = ["mIoU", "aAcc", *table["names"]]
    values = np.array(
        [[column["mIoU"], column["aAcc"], *(column["iou"].get(name) for name in table["names"])] for column in columns],
        dtype=np.float64,
    ).T  # (rows, datasets); None became NaN
    fig = Figure(figsize=(2.2 + 1.1 * len(columns), 1.2 + 0.3 * len(rows)), dpi=DPI)
    ax = fig.add_subplot()
    ax.set_facecolor("#dddddd")  # NaN cells are not drawn: the grey shows through
    ax.imshow(100 * values, cmap="viridis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    for (row, col), value in np.ndenumerate(values):
        label = "absent" if np.isnan(value) else f"{100 * value:.1f}"
        colour = "black" if np.isnan(value) or value > 0.6 else "white"
        ax.text(col, row, label, ha="center", va="center", fontsize=7, color=colour)
    ax.axhline(1.5, color="white", linewidth=2)  # the means above, the classes below
    ax.set_xticks(range(len(columns)), labels=[c["name"] for c in columns], fontsize="small")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), labels=[f"{r} %" if r in ("mIoU", "aAcc") else r for r in rows], fontsize="small")
    ax.set_title("IoU % per class on each dataset (absent: no pixel of it there)", fontsize="small", pad=24)
    fig.tight_layout()
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
