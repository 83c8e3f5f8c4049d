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

and, with ``--only init-19-lr3e-4 imagenet-19-lr3e-4 init-7-lr3e-4 imagenet-7-lr3e-4``, the same four at a
tenth of the recipe's peak LR (fine-tuning's usual step down), so each start can be compared at its better LR;
``init-7-scaled`` is init-7 with the model's layers at a tenth of the LR (``optim.init_lr_scale``) and the new
head at the LR, ``init-7-default`` the same with the head started from the 19 classes each category groups
(``model.init_map_head``): ``--init``'s defaults. The runs before them set what was then the only behaviour.

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
RECIPE_LR = 0.003  # the cpu-hour recipe's peak LR
# name: (start from the built-in model, class set, settings over the recipe's). The first eight ran before
# --init learnt its defaults, so they set what was then the only behaviour: one LR for all, a fresh head.
BEFORE = {"optim.init_lr_scale": 1.0, "model.init_map_head": False}
TENTH = {"optim.lr": 3e-4}  # a tenth of the recipe's LR: fine-tuning's usual step down
VARIANTS = {
    "init-19": (True, "train19", BEFORE),
    "imagenet-19": (False, "train19", {}),
    "init-7": (True, "categories", BEFORE),
    "imagenet-7": (False, "categories", {}),
    "init-19-lr3e-4": (True, "train19", {**BEFORE, **TENTH}),
    "imagenet-19-lr3e-4": (False, "train19", TENTH),
    "init-7-lr3e-4": (True, "categories", {**BEFORE, **TENTH}),
    "imagenet-7-lr3e-4": (False, "categories", TENTH),
    # the model's layers at a tenth of the LR, a new head at the LR: afresh, then mapped (--init's defaults);
    # init-19 with the defaults is init-19-lr3e-4 (its head is the model's own)
    "init-7-scaled": (True, "categories", {"model.init_map_head": False}),
    "init-7-default": (True, "categories", {}),
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

    init, classes, settings = VARIANTS[name]
    config = Config.from_yaml("cpu-hour")
    for key, value in settings.items():
        config.set(key, value)
    config.data.root, config.data.split = str(data), "official"
    config.labels.classes = classes
    config.train.runs_dir, config.train.budget_minutes = str(runs / name), minutes
    config.train.max_epochs = max(config.train.max_epochs, 1000)
    if init:
        config.model.init = BUILTIN
    return config


def table(runs_dir: Path) -> str:
    rows = ["| start | classes | peak LR | LR of the model's layers | head | test mIoU | aAcc | steps | epochs |"]
    rows.append("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for name, (init, classes, settings) in VARIANTS.items():
        found = sorted((runs_dir / name).glob("*/metrics.json"))
        if not found:
            continue
        metrics = json.loads(found[-1].read_text())
        start = f"--init {BUILTIN}" if init else "ImageNet (Lite0)"
        lr = settings.get("optim.lr", RECIPE_LR)
        layers_lr = f"{lr * settings.get('optim.init_lr_scale', 0.1):g}" if init else "-"
        head = "new" if not init else "kept" if classes == "train19" else "mapped"
        head = "afresh" if init and classes != "train19" and not settings.get("model.init_map_head", True) else head
        rows.append(
            f"| {start} | {classes} | {lr:g} | {layers_lr} | {head} | {metrics['mIoU']:.3f} | "
            f"{100 * metrics['aAcc']:.2f}% | {metrics['steps']} | {metrics['epochs']} |"
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
