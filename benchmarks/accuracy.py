"""Accuracy benchmark: what one CPU hour of training gives on the real Cityscapes pairs.

Trains a recipe on a seeded split of ``../shared/data/cityscapes_pairs/train`` under a wall-clock budget
(``train.budget_minutes``, validation included), with about ``--holdout`` images (450 by default) held out as
the test set: never trained on, never used for model selection (the validation images are a separate share
of the rest). By default (``--split blocks``) both are whole cities of the release's order, so the scores say
how the recipe does on streets it has never seen; ``--split official`` holds out random pairs instead, as the
first benchmarks did (those overstate it: neighbouring pairs show the same street). Training ends by testing
the best checkpoint on the held-out images with the 19 Cityscapes train classes; the run folder holds
``metrics.json``, the per-class IoU chart and the report. The same checkpoint
is then scored again with flip test-time augmentation (each photo and its mirror image, logits averaged:
``cityseg evaluate RUN --flip``), into ``RUN/flip/``, and with multi-scale test-time augmentation (scales
0.75/1/1.25, each with flip: ``cityseg evaluate RUN --tta``), into ``RUN/tta/``; the table gives all three.

Recipes:
    cpu-hour  ``configs/cpu-hour.yaml``, the project's recipe for the CPU hour;
    seed      ``configs/seed.yaml``, the original project's recipe, given the same minutes, data and split.
              Its K-Means colour bins are not Cityscapes classes, so it is trained on the same palette labels
              (19 train classes) to be scored the same way; everything else is as the original project did it.

Usage:
    python benchmarks/accuracy.py --recipe cpu-hour [--minutes 60] [--split blocks|official] [--runs-dir DIR]
                                  [--no-tta]
    python benchmarks/accuracy.py --table RUN [RUN ...]     # the markdown comparison of finished runs
    cityseg evaluate RUN --flip --out RUN/flip             # the flip scores of a run trained without them
    cityseg evaluate RUN --tta --out RUN/tta               # multi-scale test-time augmentation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the cityseg CLI does (see cli._passive_cpu_threads)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs"  # never copied into the repository
RECIPES = ("cpu-hour", "seed")


def recipe_config(
    recipe: str, data: Path, minutes: float, holdout: int, runs_dir: Path, seed: int = 0, split: str = "blocks"
):
    """The recipe's preset with the benchmark's data, split and budget."""
    from cityseg.config import Config
    from cityseg.pairs import discover

    config = Config.from_yaml(recipe)
    pool = discover(data).get("train", [])
    if len(pool) <= holdout:
        raise SystemExit(f"{data} has {len(pool)} training pairs; need more than --holdout {holdout}")
    config.data.root = str(data)
    # the folder has no val set: test = a seeded share, val = another; with blocks, both are whole cities
    config.data.split = split
    config.data.test_fraction = holdout / len(pool)
    config.train.runs_dir = str(runs_dir)
    config.train.seed = seed  # seeds the split (which pairs are held out), the initial weights and the data order
    config.train.budget_minutes = minutes
    config.train.max_epochs = max(config.train.max_epochs, 1000)  # the budget ends training, not epochs
    if recipe == "seed":
        config.labels.method, config.labels.classes = "palette", "train19"
        config.train.monitor, config.train.monitor_mode = "val_acc", "max"  # as the original (accuracy)
    return config


def table(runs: list[Path]) -> str:
    rows = ["| recipe | run | aAcc | mAcc | mIoU | held-out images | epochs | steps | training minutes |"]
    rows.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    per_class: dict[str, list[str]] = {}
    names = []
    scored = []  # (name, run, metrics): each run, and its flip scores where they were made
    for run in runs:
        config = (run / "config.yaml").read_text()
        arch = next((line.split(":", 1)[1].strip() for line in config.splitlines() if "  arch:" in line), "?")
        encoder = next((line.split(":", 1)[1].strip() for line in config.splitlines() if "  encoder:" in line), "?")
        metrics = json.loads((run / "metrics.json").read_text())
        scored.append((f"{arch}/{encoder}", run, metrics))
        for folder, what in (("flip", "flip"), ("tta", "multi-scale + flip")):
            if (run / folder / "metrics.json").is_file():
                extra = json.loads((run / folder / "metrics.json").read_text())
                scored.append((f"{arch}/{encoder} + {what}", run, {**metrics, **extra}))
    for name, run, metrics in scored:
        names.append(name)
        rows.append(
            f"| {name} | {run.name} | {100 * metrics['aAcc']:.2f}% | {100 * metrics['mAcc']:.2f}% | "
            f"{metrics['mIoU']:.3f} | {metrics['images']} | {metrics['epochs']} | {metrics['steps']} | "
            f"{metrics['fit_seconds'] / 60:.1f} |"
        )
        for cls, entry in metrics["per_class"].items():
            iou = entry.get("iou")
            per_class.setdefault(cls, []).append("absent" if iou is None else f"{iou:.3f}")
    rows += ["", "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    rows += [f"| {cls} | " + " | ".join(values) + " |" for cls, values in per_class.items()]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, default="cpu-hour")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget, validation included")
    parser.add_argument("--holdout", type=int, default=450, help="pairs held out as the test set")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "accuracy")
    parser.add_argument("--seed", type=int, default=0, help="split, initial weights and data order (default 0)")
    parser.add_argument(
        "--split",
        choices=("blocks", "official"),
        default="blocks",
        help="blocks (default): validate and test on whole held-out cities; official: on random pairs",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also score with multi-scale test-time augmentation (default; --no-tta saves about 5 minutes)",
    )
    parser.add_argument("--table", type=Path, nargs="+", help="print the comparison of these finished runs")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.table))
        return
    if not args.data.is_dir():
        raise SystemExit(f"no real pairs at {args.data}: this benchmark needs the Cityscapes pairs there")
    from cityseg.training import train

    config = recipe_config(args.recipe, args.data, args.minutes, args.holdout, args.runs_dir, args.seed, args.split)
    run = train(config)
    from cityseg.defaults import TTA_SCALES
    from cityseg.evaluation import EvaluateOptions, evaluate_run

    evaluate_run(run, options=EvaluateOptions(flip=True, progress=False), out=run / "flip")
    if args.tta:
        evaluate_run(run, options=EvaluateOptions(flip=True, scales=TTA_SCALES, progress=False), out=run / "tta")
    metrics = json.loads((run / "metrics.json").read_text())
    if args.split == "official" and metrics["images"] != args.holdout:
        print(f"warning: {metrics['images']} test images, expected {args.holdout}", file=sys.stderr)
    print(table([run]))
    print(f"\nper-class IoU chart: {run / 'plots'}")
    print(f"command: python benchmarks/accuracy.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
