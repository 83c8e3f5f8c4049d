"""Does fine-tuning pay? The built-in model against ImageNet weights, on street photos the model never saw.

The data: the three cities the built-in model was tested on, never trained on, split again by whole cities:
bremen's 316 pairs are the small training set, cologne's and krefeld's 253 the test set (the release's
order: pairs 271-586 are bremen, 587-740 cologne, 1719-1817 krefeld). A scratch folder of links holds them
(``train/`` and ``val/``; ``data.split=official`` then tests on ``val/`` and validates on a share of
``train/``), so nothing is copied.

Four runs, each the cpu-hour recipe for ``--minutes`` minutes (validation included), one after another:

    init-19       --init cityscapes-fpn-lite0, the 19 train classes (its whole network)
    imagenet-19   FPN + EfficientNet-Lite0 from ImageNet weights, the same classes
    init-7        --init cityscapes-fpn-lite0, the 7 categories (every layer but the last; a new head)
    imagenet-7    ImageNet weights, the 7 categories

and, with ``--only init-19-lr3e-4``, init-19 at a tenth of the recipe's peak LR.

Usage:
    python benchmarks/finetune.py [--minutes 10] [--runs-dir DIR] [--only init-19 imagenet-19]
    python benchmarks/finetune.py --table DIR     # the table of finished runs
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs" / "train"
TRAIN_PAIRS = range(271, 587)  # bremen
TEST_PAIRS = [*range(587, 741), *range(1719, 1818)]  # cologne, krefeld
VARIANTS = {  # name: (start from the built-in model, class set, peak LR; None: the recipe's 0.003)
    "init-19": (True, "train19", None),
    "imagenet-19": (False, "train19", None),
    "init-7": (True, "categories", None),
    "imagenet-7": (False, "categories", None),
    "init-19-lr3e-4": (True, "train19", 3e-4),  # a tenth of the recipe's LR: fine-tuning's usual step down
}
BUILTIN = "cityscapes-fpn-lite0"


def link_dataset(root: Path) -> Path:
    """``root/train`` (bremen) and ``root/val`` (cologne, krefeld): links to the real pairs."""
    for split, numbers in (("train", TRAIN_PAIRS), ("val", TEST_PAIRS)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for number in numbers:
            link = folder / f"{number}.jpg"
            if not link.exists():
                link.symlink_to(DATA / f"{number}.jpg")
    return root


def variant_config(name: str, data: Path, runs: Path, minutes: float):
    from cityseg.config import Config

    init, classes, lr = VARIANTS[name]
    config = Config.from_yaml("cpu-hour")
    if lr is not None:
        config.optim.lr = lr
    config.data.root, config.data.split = str(data), "official"
    config.labels.classes = classes
    config.train.runs_dir, config.train.budget_minutes = str(runs / name), minutes
    config.train.max_epochs = max(config.train.max_epochs, 1000)
    if init:
        config.model.init = BUILTIN
    return config


def table(runs_dir: Path) -> str:
    rows = ["| start | classes | peak LR | test mIoU | aAcc | steps | epochs | minutes |"]
    rows.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, (init, classes, lr) in VARIANTS.items():
        found = sorted((runs_dir / name).glob("*/metrics.json"))
        if not found:
            continue
        metrics = json.loads(found[-1].read_text())
        start = f"--init {BUILTIN}" if init else "ImageNet (Lite0)"
        rows.append(
            f"| {start} | {classes} | {lr or 0.003:g} | {metrics['mIoU']:.3f} | {100 * metrics['aAcc']:.2f}% | "
            f"{metrics['steps']} | "
            f"{metrics['epochs']} | {metrics['fit_seconds'] / 60:.1f} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "finetune")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS)[:4])
    parser.add_argument("--table", type=Path, help="print the table of the runs under this folder")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    if not DATA.is_dir():
        raise SystemExit(f"no real pairs at {DATA}: this benchmark needs the Cityscapes pairs there")
    from cityseg.training import train

    data = link_dataset(args.runs_dir / "data")
    for name in args.only:
        train(variant_config(name, data, args.runs_dir, args.minutes))
    print(table(args.runs_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
