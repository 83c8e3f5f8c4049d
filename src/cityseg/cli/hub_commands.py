"""``cityseg models`` and ``cityseg push``: the ready models here, and a trained one to the Hugging Face Hub."""

from __future__ import annotations

import argparse

from cityseg.cli.registry import command


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the list as JSON")


@command("models", "list the ready models: built in, and the Hub models in the local cache", _add_models)
def _run_models(args: argparse.Namespace) -> int:
    from cityseg.model_sources import list_models

    entries = list_models()
    if args.json:
        import json

        print(json.dumps([entry.to_dict() for entry in entries], indent=1))
        return 0
    rows = [("MODEL", "SOURCE", "SIZE", "CLASSES", "mIoU", "WHERE")]
    rows += [entry.row() for entry in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def _add_push(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN", help="a run folder (runs/latest) or a model folder")
    parser.add_argument("repo_id", metavar="OWNER/NAME", help="the Hub repository (created if it does not exist)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--revision", metavar="BRANCH", help="upload to this branch (created if new; default main)")
    parser.add_argument("--message", help="the commit message")
    parser.add_argument(
        "--to-folder", metavar="DIR", help="write exactly what would be uploaded into DIR (new or empty) instead"
    )
    parser.add_argument("--token", help="Hugging Face token (default: $HF_TOKEN or the one `hf auth login` saved)")


@command("push", "upload a trained model with its model card to the Hugging Face Hub", _add_push)
def _run_push(args: argparse.Namespace) -> int:
    from cityseg.push import PushOptions, push_model

    options = PushOptions(
        private=args.private, revision=args.revision, to_folder=args.to_folder, message=args.message, token=args.token
    )
    print(push_model(args.model, args.repo_id, options))
    return 0
