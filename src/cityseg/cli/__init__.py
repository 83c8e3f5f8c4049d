"""``cityseg``: a thin command line over the package's functions.

Each subcommand parses its options, calls one importable function and prints the result. Option defaults
and choices come from the modules' constants (:mod:`cityseg.defaults`, the :class:`~cityseg.config.Config`
defaults, :data:`cityseg.backends.BACKENDS`), none of which loads numpy, PIL or torch: heavy libraries are
imported inside the commands that need them, so ``cityseg --help``, ``cityseg label`` and ``cityseg synth``
start quickly.
"""

from __future__ import annotations

import argparse
import sys

from cityseg.cli import data_commands, hub_commands, model_commands, train_commands  # noqa: F401  (they register the subcommands)
from cityseg.cli.data_commands import LABEL_FLAGS
from cityseg.cli.registry import COMMANDS, command, load_config
from cityseg.cli.train_commands import TRAIN_FLAGS, _passive_cpu_threads, apply_train_flags
from cityseg.process_errors import settle

# --help lists the subcommands in the order of the pipeline; one registered elsewhere comes last
HELP_ORDER = ("synth", "label", "train", "evaluate", "demo", "predict", "export", "serve", "models", "push")

__all__ = [
    "COMMANDS",
    "LABEL_FLAGS",
    "TRAIN_FLAGS",
    "_passive_cpu_threads",
    "apply_train_flags",
    "build_parser",
    "command",
    "load_config",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityseg",
        description="Semantic segmentation of street scenes from Cityscapes image pairs.",
    )
    from cityseg import __version__

    parser.add_argument("--version", action="version", version=f"cityseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS, key=lambda name: HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)):
        cmd = COMMANDS[name]
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
    except KeyboardInterrupt:
        print("cityseg: interrupted; finished outputs are kept, nothing half-written was left", file=sys.stderr)
        return 130
    except Exception as exc:
        # one line for an error of the user's input, also raised in a worker or another rank ("" when rank 0
        # of the run prints it); a bug of ours keeps its traceback, which is what a report needs
        line = settle(exc)
        if line is None:
            raise
        if line:
            print(f"cityseg: error: {line}", file=sys.stderr)
        return 2
