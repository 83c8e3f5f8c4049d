"""``cityseg synth`` and ``cityseg label``: generated scenes, and masks turned into class labels."""

from __future__ import annotations

import argparse

from cityseg import defaults
from cityseg.cli.registry import add_config_args, command, load_config
from cityseg.config import DataConfig, LabelConfig
from cityseg.errors import CitysegError

# ---- subcommands ------------------------------------------------------------------------------
# Each is an arguments function and a run function; keep them thin: parse, call, print.


def _add_synth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder; pairs go to OUT/train (and OUT/val with --val-fraction)")
    parser.add_argument(
        "--count", type=int, default=defaults.SYNTH_SCENES, help="number of scenes (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same files (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="share of scenes written to OUT/val")


@command("synth", "generate labelled street scenes in the Cityscapes-pairs layout", _add_synth)
def _run_synth(args: argparse.Namespace) -> int:
    from cityseg.synth import write_scenes

    summary = write_scenes(args.out, count=args.count, seed=args.seed, val_fraction=args.val_fraction)
    print(summary)
    return 0


# ---- label (pairs/labels helper) ---------------------------------------------------------------

# flag -> config setting; a flag given on the command line overrides the config file and --set
LABEL_FLAGS = {
    "method": "labels.method",
    "classes": "labels.classes",
    "k": "labels.k",
    "workers": "data.workers",
    "mask_side": "data.mask_side",
    "cache_dir": "data.cache_dir",
}


def _add_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="dataset folder (train/ and val/ folders, or a folder of pairs)")
    parser.add_argument(
        "--method", choices=defaults.LABEL_METHODS, help=f"colours to classes (default {LabelConfig.method})"
    )
    parser.add_argument(
        "--classes", choices=defaults.CLASS_SET_CHOICES, help=f"class set (default {LabelConfig.classes})"
    )
    parser.add_argument("--k", type=int, metavar="K", help=f"clusters for --method kmeans (default {LabelConfig.k})")
    parser.add_argument("--workers", type=int, metavar="N", help=f"labelling processes (default {DataConfig.workers})")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed at the end)")
    parser.add_argument(
        "--mask-side", choices=defaults.MASK_SIDES, help=f"half of each pair holding the mask ({DataConfig.mask_side})"
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="label cache (default ~/.cache/cityseg)")
    parser.add_argument("--no-cache", action="store_true", help="compute every label, read and write no cache")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="also draw N images: photo, mask, labels")
    parser.add_argument("--out", default=defaults.LABEL_FIGURE, metavar="FILE", help="figure path for --show")
    add_config_args(parser)


@command("label", "turn a dataset's colour masks into class labels (cached); print class frequencies", _add_label)
def _run_label(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.data:
        config.data.root = args.data
    for flag, key in LABEL_FLAGS.items():
        if getattr(args, flag) is not None:
            config.set(key, getattr(args, flag))
    if args.skip_bad:
        config.data.skip_bad = True
    if not config.data.root:
        raise CitysegError("no dataset: pass DATA (a folder of pair images) or set data.root")
    from cityseg.labels import label_folder

    print(label_folder(config, use_cache=not args.no_cache, show=args.show, figure=args.out))
    return 0
