"""How a model transfers: one model scored on several datasets, in one table, as papers print it.

:func:`evaluate_transfer` (``cityseg evaluate RUN --data A --data B ...``) scores the model on each dataset
with :func:`cityseg.evaluation.evaluate_run` (each into its own ``RUN/evaluations/`` folder), then writes the
:class:`TransferTable`: aAcc and mIoU per dataset, and the per-class IoU side by side, as ``transfer.json``,
a figure (``plots/transfer.png``) and a section of the run's report.

The mIoU of each column is over the classes that dataset annotates: a class with no pixel in its truth
(a class it does not label, or one that does not occur in it) is *absent*, shown as ``-``, not scored 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text

if TYPE_CHECKING:
    from cityseg.evaluation import EvaluateOptions

TRANSFER_FILE = "transfer.json"
TRANSFER_FIGURE = "transfer.png"


@dataclass
class TransferColumn:
    """One dataset's scores: ``iou`` maps each class to its IoU, or None where the dataset has no pixel of it."""

    name: str
    data: str
    split: str
    images: int
    aAcc: float | None
    mIoU: float | None
    iou: dict[str, float | None]
    own: bool = False  # the data the model was trained on (its own held-out split)
    written: str = ""


@dataclass
class TransferTable:
    """A model's scores on several datasets (``str()``: the text table ``cityseg evaluate`` prints)."""

    model: str
    names: list[str]
    columns: list[TransferColumn] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "names": list(self.names), "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TransferTable:
        return cls(values["model"], list(values["names"]), [TransferColumn(**c) for c in values["columns"]])

    def rows(self) -> list[tuple[str, list[str]]]:
        """(row name, one cell per dataset) for images, aAcc, mIoU and every class; percentages, ``-`` absent."""
        rows = [
            ("split", [c.split + (" (own)" if c.own else "") for c in self.columns]),
            ("images", [str(c.images) for c in self.columns]),
            ("aAcc %", [_percent(c.aAcc) for c in self.columns]),
            ("mIoU %", [_percent(c.mIoU) for c in self.columns]),
        ]
        return rows + [(name, [_percent(c.iou.get(name)) for c in self.columns]) for name in self.names]

    def __str__(self) -> str:
        header = ("", [c.name for c in self.columns])
        rows = [header, *self.rows()]
        first = max(len(name) for name, _ in rows)
        widths = [max(len(cells[i]) for _, cells in rows) for i in range(len(self.columns))]
        lines = [
            f"{name:<{first}}  " + "  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True))
            for name, cells in rows
        ]
        lines.insert(5, "-" * max(len(line) for line in lines))
        note = "IoU % per class; mIoU over the classes each dataset annotates; - : absent from that dataset"
        return "\n".join([*lines, note])

    def markdown(self, model_column: str | None = None) -> str:
        """The table in Markdown (classes as rows, datasets as columns)."""
        head = [model_column or "", *[c.name for c in self.columns]]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(self.columns)]
        for name, cells in self.rows():
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def transfer_column(name: str, report: dict[str, Any]) -> TransferColumn:
    """A dataset's column from its :func:`cityseg.evaluation.evaluate_run` report: absent classes are None."""
    per_class = report["per_class"]
    iou = {cls: (entry["iou"] if entry.get("present") else None) for cls, entry in per_class.items()}
    scored = [value for value in iou.values() if value is not None]
    return TransferColumn(
        name=name,
        data=str(report.get("data", "")),
        split=str(report.get("split", "")),
        images=int(report.get("images", 0)),
        aAcc=report.get("aAcc"),
        mIoU=sum(scored) / len(scored) if scored else None,
        iou=iou,
        own=not report.get("annotated_only", False),
        written=str(report.get("written", "")),
    )


def dataset_names(datasets: Sequence[str | os.PathLike]) -> list[str]:
    """A distinct short name per dataset: its folder's name, numbered on a clash.

    Example:
        >>> dataset_names(["data/kitti", "other/kitti", "data/scenes"])
        ['kitti', 'kitti-2', 'scenes']
    """
    names: list[str] = []
    for data in datasets:
        base = Path(data).resolve().name or "data"
        name, number = base, 2
        while name in names:
            name, number = f"{base}-{number}", number + 1
        names.append(name)
    return names


def evaluate_transfer(
    target: str | os.PathLike,
    datasets: Sequence[str | os.PathLike],
    options: EvaluateOptions | None = None,
    out: str | os.PathLike | None = None,
    images: dict[int, Sequence[Path]] | None = None,
) -> TransferTable:
    """Score one model on several datasets and write the transfer table (``cityseg evaluate RUN --data A --data B``).

    Args:
        target: a run folder or a model folder.
        datasets: dataset folders (any layout cityseg reads).
        options: how each dataset is scored (:class:`cityseg.evaluation.EvaluateOptions`: the split scored on
            each, ``test``, ``val``, ``train`` or ``all``, on the run's own data its own; flip, scales,
            batch_size, label_format ...).
        out: folder for the table (default ``RUN/evaluations/transfer-<split>-<names>/``); each dataset's
            evaluation goes to ``OUT/<name>/`` then, else to its usual ``RUN/evaluations/`` folder.
        images: for some datasets (by position), exactly the photos to score (``evaluate_run(images=...)``).

    Returns:
        The :class:`TransferTable`, also written as ``transfer.json`` beside ``plots/transfer.png``.
    """
    from cityseg.evaluation import EVALUATIONS_DIR, EvaluateOptions, evaluate_run
    from cityseg.model_sources import find_model

    options = options or EvaluateOptions()
    split = options.split
    if not datasets:
        raise CitysegError("no dataset to evaluate on: pass --data DATA (once per dataset)")
    model_dir, run_dir = find_model(target)
    names = dataset_names(datasets)
    folder = Path(out) if out else (run_dir or model_dir) / EVALUATIONS_DIR / f"transfer-{split}-{','.join(names)}"
    table = TransferTable(str(model_dir.resolve()), [])
    for index, (name, data) in enumerate(zip(names, datasets, strict=True)):
        given = (images or {}).get(index)
        where = folder / name if out else None
        report = evaluate_run(target, data, options, out=where, images=given)
        table.names = table.names or list(report["per_class"])
        table.columns.append(transfer_column(name, report))
    write_transfer(table, folder)
    if run_dir is not None:
        from cityseg.report import write_report

        write_report(run_dir)
    return table


def write_transfer(table: TransferTable, folder: str | os.PathLike) -> Path:
    """Write ``transfer.json`` and ``plots/transfer.png`` into ``folder``; returns the JSON file."""
    from cityseg.plots import plot_transfer

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CitysegError(f"cannot create {folder}: {exc.strerror or exc}; pick another --out") from None
    path = folder / TRANSFER_FILE
    atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")
    plot_transfer(table.to_dict(), folder / "plots" / TRANSFER_FIGURE)
    return path
