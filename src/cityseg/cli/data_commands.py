"""``cityseg synth`` and ``cityseg label``: generated scenes, and masks turned into class labels."""

from __future__ import annotations

import argparse
import re

from cityseg import defaults
from cityseg.cli.registry import add_config_args, add_dataset_options, command, load_config
from cityseg.config import DataConfig, LabelConfig
from cityseg.errors import CitysegError

# ---- subcommands ------------------------------------------------------------------------------
# Each is an arguments function and a run function; keep them thin: parse, call, print.

# cityseg.synth.write_drive's defaults, for the help (the CLI does not import numpy to parse; a test checks them)
DRIVE_SECONDS, DRIVE_FPS, DRIVE_SIZE = 5.0, 30, (256, 512)
DRIVE_FLAGS = ("seconds", "fps", "workers")  # the options that only mean something with --video


def _add_synth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", help="output folder; pairs go to OUT/train (and OUT/val with --val-fraction)")
    parser.add_argument(
        "--count", type=int, default=defaults.SYNTH_SCENES, help="number of scenes (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same files (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="share of scenes written to OUT/val")
    parser.add_argument(
        "--layout",
        choices=defaults.DATASET_LAYOUTS,
        default=defaults.DATASET_LAYOUTS[0],
        help="write the scenes as this dataset keeps its photos and labels (default %(default)s: Cityscapes pairs)",
    )
    parser.add_argument(
        "--label-format",
        choices=defaults.LABEL_FORMATS[2:],
        help="with --layout: the labels' format (default: the dataset's own)",
    )
    drive = parser.add_argument_group("a generated drive, instead of OUT: a video with the exact labels of every frame")
    drive.add_argument(
        "--video",
        metavar="OUT.mp4",
        help="write the camera driving down one street as H.264 video (.mp4, .mkv or .mov), and each frame's "
        "label ids to OUT_labelIds/000000.png ...",
    )
    drive.add_argument("--seconds", type=float, metavar="S", help=f"length of the drive (default {DRIVE_SECONDS:g})")
    drive.add_argument("--fps", type=int, metavar="N", help=f"frames per second (default {DRIVE_FPS})")
    drive.add_argument(
        "--size",
        metavar="HxW",
        help=f"frame height x width in pixels, both even (default {DRIVE_SIZE[0]}x{DRIVE_SIZE[1]}; 720x1280 for 720p); "
        "with --layout, the scenes' size (default: the dataset's shape, small)",
    )
    drive.add_argument(
        "--workers", type=int, metavar="N", help="processes drawing frames at once; same files (default 1)"
    )


@command("synth", "generate labelled street scenes (as Cityscapes pairs, KITTI, BDD100K ...), or a drive", _add_synth)
def _run_synth(args: argparse.Namespace) -> int:
    if args.video is not None:
        return _run_drive(args)
    for flag in DRIVE_FLAGS:
        if getattr(args, flag) is not None:
            raise CitysegError(f"--{flag} is for a drive: add --video OUT.mp4")
    if args.out is None:
        raise CitysegError("pass OUT, the folder for the scenes, or --video OUT.mp4 for a drive")
    if args.layout != "pairs":
        from cityseg.synth import write_layout

        size = None if args.size is None else parse_size(args.size)
        options = {"count": args.count, "seed": args.seed, "val_fraction": args.val_fraction, "size": size}
        print(write_layout(args.out, args.layout, label_format=args.label_format, **options))
        return 0
    if args.size is not None or args.label_format is not None:
        raise CitysegError("--size and --label-format are for a drive or a --layout; pairs are 512x256")
    from cityseg.synth import write_scenes

    summary = write_scenes(args.out, count=args.count, seed=args.seed, val_fraction=args.val_fraction)
    print(summary)
    return 0


def _run_drive(args: argparse.Namespace) -> int:
    if args.out is not None:
        raise CitysegError(f"pass OUT ({args.out}) for scenes or --video for a drive, not both")
    if args.count != defaults.SYNTH_SCENES or args.val_fraction != 0.0:
        raise CitysegError("--count and --val-fraction are for scenes in OUT; a drive takes --seconds and --fps")
    if args.layout != "pairs" or args.label_format is not None:
        raise CitysegError("--layout and --label-format are for scenes in OUT, not a drive")
    from cityseg.synth import write_drive

    summary = write_drive(
        args.video,
        seconds=DRIVE_SECONDS if args.seconds is None else args.seconds,
        fps=DRIVE_FPS if args.fps is None else args.fps,
        size=DRIVE_SIZE if args.size is None else parse_size(args.size),
        seed=args.seed,
        workers=1 if args.workers is None else args.workers,
    )
    print(summary)
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """``256x512`` (height x width; ``256,512`` too) or ``256`` (square) -> (height, width).

    Example:
        >>> parse_size("720x1280"), parse_size("64")
        ((720, 1280), (64, 64))
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", text)
    if not match:
        raise CitysegError(f"--size must be HEIGHTxWIDTH in pixels, e.g. 256x512 or 720x1280, got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


# ---- label (pairs/labels helper) ---------------------------------------------------------------

# flag -> config setting; a flag given on the command line overrides the config file and --set
LABEL_FLAGS = {
    "method": "labels.method",
    "classes": "labels.classes",
    "label_format": "data.label_format",
    "k": "labels.k",
    "workers": "data.workers",
    "mask_side": "data.mask_side",
    "cache_dir": "data.cache_dir",
}


def _add_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data", nargs="?", help="dataset folder: pairs (train/ and val/, or one folder), KITTI, images/+labels/ ..."
    )
    parser.add_argument(
        "--method", choices=defaults.LABEL_METHODS, help=f"colours to classes (default {LabelConfig.method})"
    )
    add_dataset_options(parser)
    parser.add_argument("--k", type=int, metavar="K", help=f"clusters for --method kmeans (default {LabelConfig.k})")
    parser.add_argument("--workers", type=int, metavar="N", help=f"labelling processes (default {DataConfig.workers})")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable images, photos without a label and labels without a photo (listed)",
    )
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
