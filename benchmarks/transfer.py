"""Transfer benchmark: models scored on datasets they were and were not trained on, in one table.

The synthetic-to-real experiment in miniature: a model trained only on generated scenes (``cityseg synth``) and
the cpu-hour model trained on the real Cityscapes pairs, each evaluated on the real pairs and on generated
scenes. Each model is scored by ``cityseg evaluate RUN --data A --data B`` (:func:`cityseg.transfer.evaluate_transfer`);
the tables are printed in Markdown for BENCHMARKS.md.

Every model is scored on the same images of a dataset: when one of the runs was trained on it, its held-out
test split (its ``splits.json``), so no model is scored on images any of them trained on; otherwise the
dataset's own test split (its val folder, or a seeded share). mIoU is over the classes each dataset annotates;
a class absent from a dataset is ``-``, not 0.

Usage:
    python benchmarks/transfer.py --model synthetic=runs/SYNTH_RUN --model cpu-hour=runs/CPU_HOUR_RUN \\
        --data "real pairs=../shared/data/cityscapes_pairs" --data "generated scenes=data/scenes"
    python benchmarks/transfer.py --table transfer.json        # the tables again, from a saved result
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the cityseg CLI does (see cli._passive_cpu_threads)


def _named(text: str, what: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise SystemExit(f"--{what} takes NAME=PATH, got {text!r}")
    return name.strip(), Path(path.strip())


def held_out_images(data: Path, runs: list[Path]) -> list[Path] | None:
    """The test list of the first run trained on ``data`` (its splits.json), or None when none was."""
    from cityseg.model_sources import find_model
    from cityseg.splits import load_splits

    for target in runs:
        run = find_model(target)[1]
        saved = run / "splits.json" if run else None
        if saved is not None and saved.is_file():
            root = Path(json.loads(saved.read_text()).get("root", ""))
            if root.resolve() == data.resolve():
                return load_splits(saved, data).get("test") or None
    return None


def measure(models: list[tuple[str, Path]], datasets: list[tuple[str, Path]], options) -> dict:
    """Score every model on every dataset (``options``: an EvaluateOptions); the result is JSON-ready (``--table``
    prints it again)."""
    from cityseg.transfer import evaluate_transfer

    images = {i: held_out_images(path, [run for _, run in models]) for i, (_, path) in enumerate(datasets)}
    result = {"datasets": [name for name, _ in datasets], "models": []}
    for name, run in models:
        table = evaluate_transfer(run, [path for _, path in datasets], options, images=images)
        result["models"].append({"name": name, "run": str(run), "table": table.to_dict()})
    return result


def markdown(result: dict) -> str:
    """The summary table (aAcc, mIoU per model and dataset), then the per-class IoU side by side."""
    from cityseg.transfer import TransferTable

    tables = [(entry["name"], TransferTable.from_dict(entry["table"])) for entry in result["models"]]
    names = result["datasets"]
    lines = ["| model | evaluated on | images | aAcc % | mIoU % |", "|---|---|---:|---:|---:|"]
    for model, table in tables:
        for name, column in zip(names, table.columns, strict=True):
            own = " (trained on it)" if column.own else ""
            lines.append(f"| {model} | {name}{own} | {column.images} | {_pct(column.aAcc)} | {_pct(column.mIoU)} |")
    heads = [f"{model} on {name}" for model, table in tables for name in names]
    lines += ["", "| IoU % | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for cls in tables[0][1].names:
        cells = [_pct(column.iou.get(cls)) for _, table in tables for column in table.columns]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=RUN", help="a run or model folder")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=DATA", help="a dataset folder")
    parser.add_argument("--split", default="test", help="split of a dataset no run was trained on (default test)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default: each run's)")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation for every model")
    parser.add_argument("--out", metavar="FILE.json", help="also save the result here (reprint with --table)")
    parser.add_argument("--table", metavar="FILE.json", help="print the tables of a saved result and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return 0
    if not args.model or not args.data:
        parser.error("give at least one --model NAME=RUN and one --data NAME=DATA")
    models = [_named(text, "model") for text in args.model]
    datasets = [_named(text, "data") for text in args.data]
    from cityseg.evaluation import EvaluateOptions

    flip = True if args.flip else None
    options = EvaluateOptions(split=args.split, batch_size=args.batch_size, progress=False, flip=flip)
    result = measure(models, datasets, options)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
