"""The subcommand registry and the options several subcommands share."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from cityseg import defaults
from cityseg.backends import BACKEND_CHOICES
from cityseg.config import Config, DataConfig, LabelConfig


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}  # subcommand name -> Command, in the order they appear in --help


Options = TypeVar("Options")


def options_from_args(kind: type[Options], args: argparse.Namespace, **derived: Any) -> Options:
    """An options dataclass built from the parsed flags: each field from the flag of its name, where there is
    one; ``derived`` gives the fields a flag does not hold as they are (percentages, negated switches ...).
    """
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(kind) if hasattr(args, field.name)}
    return kind(**{**values, **derived})


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``run(args)`` as subcommand ``name`` (a registry, not an if-chain)."""

    def register(run):
        COMMANDS[name] = Command(help, add_arguments, run)
        return run

    return register


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see configs/); flags override it")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one setting, e.g. --set train.max_epochs=5 (repeatable)",
    )


MODEL_HELP = (
    "a model folder, a run folder, runs/latest, a built-in model (cityseg models lists them) or a Hugging Face "
    "Hub repository owner/name[@revision]; a local path wins"
)


def add_model(parser: argparse.ArgumentParser, classes: bool = False) -> None:
    """The MODEL argument (and, for commands that run a Hub checkpoint, ``--classes``)."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    if classes:
        parser.add_argument(
            "--classes",
            dest="model_classes",
            metavar="SET|FILE.yaml",
            help="for a Hub checkpoint that does not name its classes (segmentation-models-pytorch's): its "
            "class set or class table (default: train19 for a Cityscapes one)",
        )


def add_mask_side(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mask-side", choices=defaults.MASK_SIDES, default=DataConfig.mask_side, help="mask half of a pair"
    )


def add_dataset_options(parser) -> None:
    """``--classes`` and ``--label-format``: which classes, and what the dataset's labels are (a parser or a group)."""
    parser.add_argument(
        "--classes",
        metavar="SET|FILE",
        help=f"class set: {', '.join(defaults.CLASS_SET_CHOICES)}, voc21, your class table (a YAML file) or an "
        f"export's class list (labelmap.txt, _classes.csv, a COCO json); default {LabelConfig.classes}: the "
        "dataset's own list where an annotation tool's export has one, else train19",
    )
    parser.add_argument(
        "--label-format",
        choices=defaults.LABEL_FORMATS,
        help=f"what the labels are (default {DataConfig.label_format}: the layout's own; pairs: colour masks)",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=defaults.DEFAULT_BACKEND,
        help="runtime (default %(default)s: ONNX Runtime on MODEL/model.onnx if there, else torch)",
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="with --backend onnx or openvino: the ONNX file (default MODEL/model.int8.onnx if there, "
        "else MODEL/model.onnx)",
    )


def load_config(args: argparse.Namespace) -> Config:
    """The run's one config: defaults, then --config FILE, then --set overrides."""
    config = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    return config.override(getattr(args, "set", []))


TTA_HELP = (
    "multi-scale test-time augmentation: scales "
    + "/".join(f"{scale:g}" for scale in defaults.TTA_SCALES)
    + ", each with its mirror image, logits averaged (about 5x the time)"
)


def add_tta(parser: argparse.ArgumentParser, flip_default: str = "") -> None:
    """``--flip`` and ``--tta``, the test-time augmentation of evaluate and predict.

    Args:
        flip_default: what ``--flip`` is when not given (evaluate: the run's setting), which adds ``--no-flip``;
            empty: off unless given.
    """
    flip_help = "average with the mirror image's logits (2x the time)"
    if flip_default:
        flip_help = f"also segment each mirror image and average the logits (default: {flip_default})"
    parser.add_argument(
        "--flip", action=argparse.BooleanOptionalAction if flip_default else "store_true", help=flip_help
    )
    parser.add_argument("--tta", action="store_true", help=TTA_HELP)
