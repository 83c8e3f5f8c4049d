"""``cityseg``: a thin command line over the package's functions.

Each subcommand parses its options, calls one importable function and prints the result. Heavy
libraries (torch, Lightning) are imported inside the commands that need them, so ``cityseg --help``,
``cityseg label`` and ``cityseg synth`` start quickly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple

from cityseg.errors import CitysegError


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}  # subcommand name -> Command, in the order they appear in --help


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


def load_config(args: argparse.Namespace):
    """The run's one config: defaults, then --config FILE, then --set overrides."""
    from cityseg.config import Config

    config = Config.from_yaml(args.config) if getattr(args, "config", None) else Config()
    return config.override(getattr(args, "set", []))


# ---- subcommands ------------------------------------------------------------------------------
# Each is an arguments function and a run function; keep them thin: parse, call, print.


def _add_synth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder; pairs go to OUT/train, OUT/val (or OUT itself with --flat)")
    parser.add_argument("--count", type=int, default=100, help="number of scenes (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same files (default 0)")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="share of scenes written to OUT/val")


@command("synth", "generate labelled street scenes in the Cityscapes-pairs layout", _add_synth)
def _run_synth(args: argparse.Namespace) -> int:
    from cityseg.synth import write_scenes

    summary = write_scenes(args.out, count=args.count, seed=args.seed, val_fraction=args.val_fraction)
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityseg",
        description="Semantic segmentation of street scenes from Cityscapes image pairs.",
    )
    from cityseg import __version__

    parser.add_argument("--version", action="version", version=f"cityseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 1
    try:
        return args.run(args) or 0
    except CitysegError as exc:
        print(f"cityseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cityseg: interrupted; finished outputs are kept, nothing half-written was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
