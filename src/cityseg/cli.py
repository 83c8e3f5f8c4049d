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
    parser.add_argument("out", help="output folder; pairs go to OUT/train (and OUT/val with --val-fraction)")
    parser.add_argument("--count", type=int, default=100, help="number of scenes (default 100)")
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
    parser.add_argument("--method", choices=("palette", "kmeans"), help="colours to classes (default palette)")
    parser.add_argument("--classes", choices=("train19", "categories", "labelids"), help="class set (default train19)")
    parser.add_argument("--k", type=int, metavar="K", help="clusters for --method kmeans (default 10)")
    parser.add_argument("--workers", type=int, metavar="N", help="labelling processes (default 2)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed at the end)")
    parser.add_argument("--mask-side", choices=("right", "left"), help="half of each pair holding the mask (right)")
    parser.add_argument("--cache-dir", metavar="DIR", help="label cache (default ~/.cache/cityseg)")
    parser.add_argument("--no-cache", action="store_true", help="compute every label, read and write no cache")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="also draw N images: photo, mask, labels")
    parser.add_argument("--out", default="label_figure.png", metavar="FILE", help="figure path for --show")
    add_config_args(parser)


@command("label", "turn a dataset's colour masks into class labels (cached); print class frequencies", _add_label)
def _run_label(args: argparse.Namespace) -> int:
    from pathlib import Path

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
    figure = Path(args.out)
    if args.show > 0:  # fail before the work, not after it
        from cityseg.files import ensure_writable_dir

        try:
            ensure_writable_dir(figure.parent if str(figure.parent) else ".")
        except CitysegError:
            raise CitysegError(
                f"cannot write figure {figure}: its folder is not writable; pick another --out"
            ) from None

    from cityseg.labels import LabelCache, label_dataset, make_labeller
    from cityseg.pairs import discover

    data = config.data
    splits = discover(data.root)
    paths = [path for images in splits.values() for path in images]
    cache_dir = data.cache_dir or None
    labeller = make_labeller(config.labels, splits.get("train", paths), mask_side=data.mask_side, cache_dir=cache_dir)
    report = label_dataset(
        paths,
        labeller,
        cache_dir=cache_dir,
        workers=max(1, data.workers),
        skip_bad=data.skip_bad,
        mask_side=data.mask_side,
        use_cache=not args.no_cache,
    )
    resumed = f", {report.cached} of them already in the cache" if report.cached else ""
    print(f"labelled {report.count} of {len(paths)} images in {data.root} ({labeller.key()}){resumed}")
    print(report.table())
    if labeller.method == "kmeans":
        print("clusters absorbed:")
        for cluster, names in labeller.absorbed().items():
            print(f"  {labeller.class_set.names[cluster]}: {', '.join(names) or '-'}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} bad images:")
        for path, reason in report.skipped:
            print(f"  {path}: {reason}")
    if args.show > 0:
        from cityseg.labels import label_figure_rows
        from cityseg.plots import plot_label_figure

        cache = LabelCache(labeller, cache_dir, enabled=not args.no_cache)
        skipped = {path for path, _ in report.skipped}
        shown = [path for path in paths if path not in skipped][: args.show]
        rows = label_figure_rows(shown, cache, data.mask_side)
        try:
            plot_label_figure(rows, labeller.class_set, figure)
        except OSError as exc:
            raise CitysegError(f"cannot write figure {figure}: {exc.strerror or exc}; choose another --out") from None
        print(f"figure: {figure}")
    return 0


# ---- train, evaluate, demo (training helper) ---------------------------------------------------

# flag -> config setting; a flag given on the command line overrides the config file and --set
TRAIN_FLAGS = {
    "arch": "model.arch",
    "encoder": "model.encoder",
    "encoder_weights": "model.encoder_weights",
    "size": "data.size",
    "batch_size": "data.batch_size",
    "epochs": "train.max_epochs",
    "lr": "optim.lr",
    "split": "data.split",
    "workers": "data.workers",
    "accelerator": "train.accelerator",
    "devices": "train.devices",
    "num_nodes": "train.num_nodes",
    "strategy": "train.strategy",
    "precision": "train.precision",
    "budget_minutes": "train.budget_minutes",
    "runs_dir": "train.runs_dir",
}


def _passive_cpu_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless the user chose otherwise.

    Must run before torch is imported (libgomp reads it once). On a machine shared with other work,
    spinning threads wait for each other's lost time slices: training measured 3-4x slower with two
    spinning threads than with two sleeping ones on a busy 2-core machine.
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _size_setting(text: str) -> str:
    """``--size 128`` -> square 128x128; ``--size 128x256`` or ``128,256`` -> (height, width)."""
    parts = [p for p in text.lower().replace("x", ",").split(",") if p.strip()]
    return f"{parts[0]},{parts[0]}" if len(parts) == 1 else ",".join(parts)


def apply_train_flags(config, args: argparse.Namespace):
    """Copy the train flags that were given onto ``config`` (type-checked by Config.set)."""
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            config.set(key, _size_setting(value) if flag == "size" else value)
    return config


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="dataset folder (train/ and val/ folders, or a folder of pairs)")
    add_config_args(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--arch", help="smp architecture, e.g. unet, fpn, deeplabv3plus (default unet)")
    model.add_argument("--encoder", help="smp encoder, e.g. resnet34, mobilenet_v2, tu-<timm name> (default resnet34)")
    model.add_argument("--encoder-weights", metavar="imagenet|none|PATH", help="encoder initialisation (default none)")
    data = parser.add_argument_group("data and optimisation")
    data.add_argument("--size", metavar="H[xW]", help="training resolution, e.g. 256 or 256x512 (default 256)")
    data.add_argument("--batch-size", metavar="N", help="images per step and device (default 8)")
    data.add_argument("--epochs", metavar="N", help="maximum epochs (default 50)")
    data.add_argument("--lr", metavar="LR", help="peak learning rate (default 0.001)")
    data.add_argument("--split", choices=("official", "seed"), help="official (default) or seed (pooled 64/16/20)")
    data.add_argument("--workers", metavar="N", help="DataLoader and labelling worker processes (default 2)")
    run = parser.add_argument_group("hardware and run")
    run.add_argument("--accelerator", help="cpu, gpu, mps or auto (default auto)")
    run.add_argument("--devices", help="devices per node, or auto (default auto)")
    run.add_argument("--num-nodes", metavar="N", help="machines (default 1)")
    run.add_argument("--strategy", help="Lightning strategy: auto, ddp, ... (default auto)")
    run.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed ... (default 32-true)")
    run.add_argument("--budget-minutes", metavar="M", help="stop after M minutes, validation included; best kept")
    run.add_argument("--runs-dir", metavar="DIR", help="where run folders go (default runs)")
    run.add_argument("--resume", metavar="RUN", help="continue RUN (e.g. runs/latest) from its last checkpoint")


@command("train", "train a segmentation model; writes a run folder under runs/", _add_train)
def _run_train(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    from cityseg.config import Config

    if args.resume:
        if args.config:
            raise CitysegError("--resume continues a run with its own config.yaml; change settings with --set or flags")
        from cityseg.training import resolve_run

        config = Config.from_yaml(resolve_run(args.resume) / "config.yaml").override(args.set)
    else:
        config = load_config(args)
    if args.data:
        config.data.root = args.data
    apply_train_flags(config, args)
    if not config.data.root:
        raise CitysegError("no dataset: pass DATA (a folder of pair images) or set data.root")

    from cityseg.training import train

    run_dir = train(config, resume=args.resume)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # one summary, not one per training process
        _print_run_summary(run_dir)
    return 0


def _print_run_summary(run_dir) -> None:
    import json

    from cityseg.evaluation import format_table

    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(format_table(metrics))
    print(f"run folder: {run_dir}\nreport:     {run_dir / 'report.html'}")


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN|MODEL", help="a run folder (runs/latest) or a model folder")
    parser.add_argument("--data", help="dataset folder (default: the run's data.root)")
    parser.add_argument("--split", default="test", choices=("test", "val", "train"), help="which split (default test)")
    parser.add_argument("--baseline", action="store_true", help="also score the untrained model (same init seed)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default: the run's)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (default: the run's)")
    parser.add_argument("--accelerator", help="cpu, gpu, auto (default: the run's)")
    parser.add_argument("--out", metavar="DIR", help="where metrics.json and plots go (default: the run folder)")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="also segment each mirror image and average the logits (default: the run's data.eval_flip)",
    )


@command("evaluate", "score a trained model on the test split: aAcc, mAcc, mIoU, per-class IoU", _add_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    from cityseg.evaluation import format_table
    from cityseg.training import evaluate_run

    result = evaluate_run(
        args.target,
        data=args.data,
        split=args.split,
        baseline=args.baseline,
        batch_size=args.batch_size,
        workers=args.workers,
        accelerator=args.accelerator,
        out=args.out,
        flip=args.flip,
    )
    if "baseline" in result:
        print("untrained baseline (same architecture and init seed):")
        print(format_table(result["baseline"]))
        print()
    print(format_table(result))
    print(f"metrics: {result['written']}")
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--count", type=int, default=300, help="scenes to generate (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed for scenes, split and training (default 0)")
    add_config_args(parser)


@command("demo", "generate scenes, train a small model, evaluate and report, in about 10 minutes on a CPU", _add_demo)
def _run_demo(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    from cityseg.config import Config
    from cityseg.demo import run_demo

    # the packaged demo preset (or --config FILE), with any --set overrides
    config = Config.from_yaml(args.config or "demo").override(args.set)
    result = run_demo(args.out, count=args.count, seed=args.seed, config=config)
    print(result)
    return 0


# ---- predict, export (predict/export helper) ---------------------------------------------------


def _add_predict(parser: argparse.ArgumentParser) -> None:
    from cityseg.predict import BACKENDS

    parser.add_argument("model", metavar="MODEL", help="a model folder, a run folder, or runs/latest")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders or glob patterns ('*.jpg')")
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder (created)")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="runtime (default torch)")
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="with --backend onnx or openvino: the ONNX file (default MODEL/model.int8.onnx if there, "
        "else MODEL/model.onnx)",
    )
    parser.add_argument(
        "--ids",
        choices=("classes", "trainids", "labelids"),
        default="classes",
        help="values of the label PNG: the model's class indices (train ids for a train19 model; default), "
        "Cityscapes train ids, or official label ids",
    )
    parser.add_argument("--pairs", action="store_true", help="inputs are pair images: segment their photo half")
    parser.add_argument("--mask-side", choices=("right", "left"), default="right", help="mask half of a pair")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per forward pass (default 1)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: all cores)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the colours in the overlay (default 0.5)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images (listed at the end)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--flip", action="store_true", help="average with the mirror image's logits (2x the time)")


@command("predict", "segment photos: label-id PNG, colour PNG and overlay per image", _add_predict)
def _run_predict(args: argparse.Namespace) -> int:
    from cityseg.predict import predict_files

    summary = predict_files(
        args.model,
        args.inputs,
        args.out,
        backend=args.backend,
        ids=args.ids,
        pairs=args.pairs,
        mask_side=args.mask_side,
        batch_size=args.batch_size,
        threads=args.threads,
        onnx_file=args.onnx,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        flip=args.flip,
        overlay_alpha=args.alpha,
    )
    print(summary)
    return 0


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a model folder, a run folder, or runs/latest")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (default onnx)")
    parser.add_argument("--out", metavar="FILE", help="fp32 ONNX file (default MODEL/model.onnx; int8 beside it)")
    parser.add_argument("--quantize", choices=("int8",), help="also write a static int8 model (MODEL/model.int8.onnx)")
    parser.add_argument("--calibration", metavar="DIR", help="real photos to calibrate int8 on (or pairs with --pairs)")
    parser.add_argument("--pairs", action="store_true", help="DIR holds pair images: photo half used, masks scored")
    parser.add_argument("--mask-side", choices=("right", "left"), default="right", help="mask half of a pair")
    parser.add_argument("--calibration-images", type=int, default=64, metavar="N", help="default 64")
    parser.add_argument("--check-images", type=int, default=16, metavar="N", help="held-out images (default 16)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=99.0,
        metavar="PERCENT",
        help="refuse a model whose argmax agrees with its reference on fewer pixels (default 99)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--calibrate-method", choices=("minmax", "percentile", "entropy"), default="minmax", help="default minmax"
    )
    parser.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (pre-VNNI CPUs)")
    parser.add_argument("--qoperator", action="store_true", help="QOperator format instead of QDQ")
    parser.add_argument(
        "--keep-fp32",
        metavar="PREFIX",
        action="append",
        help="leave nodes whose name starts with PREFIX in fp32, e.g. /encoder (repeatable); default: every "
        "layer int8, or the encoder in fp32 if that falls under --min-agreement",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed of the calibration/check split (default 0)")


@command("export", "export a model to ONNX (optionally int8), checked against PyTorch before writing", _add_export)
def _run_export(args: argparse.Namespace) -> int:
    from cityseg.export import export_onnx

    report = export_onnx(
        args.model,
        out=args.out,
        quantize=args.quantize,
        calibration=args.calibration,
        pairs=args.pairs,
        mask_side=args.mask_side,
        calibration_images=args.calibration_images,
        check_images=args.check_images,
        min_agreement=args.min_agreement / 100,
        opset=args.opset,
        per_channel=not args.per_tensor,
        reduce_range=args.reduce_range,
        quant_format="qoperator" if args.qoperator else "qdq",
        calibrate_method=args.calibrate_method,
        keep_fp32=tuple(args.keep_fp32) if args.keep_fp32 else None,
        seed=args.seed,
    )
    print(report)
    return 0


# ---- serve (serve helper) ----------------------------------------------------------------------


def _add_serve(parser: argparse.ArgumentParser) -> None:
    from cityseg.predict import BACKENDS

    parser.add_argument("model", metavar="MODEL", help="a model folder, a run folder, or runs/latest")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="runtime (default torch)")
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="with --backend onnx or openvino: the ONNX file (default MODEL/model.int8.onnx if there, "
        "else MODEL/model.onnx)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default 8000)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: all cores)")
    parser.add_argument("--max-batch", type=int, default=4, metavar="N", help="images per forward pass (default 4)")
    parser.add_argument(
        "--queue-size", type=int, default=16, metavar="N", help="requests in flight before 503 busy (default 16)"
    )
    parser.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload (default 20)")
    parser.add_argument(
        "--max-megapixels", type=float, default=40.0, metavar="MP", help="largest image area (default 40)"
    )
    parser.add_argument("--max-side", type=int, default=10_000, metavar="PX", help="longest side (default 10000)")
    parser.add_argument(
        "--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info", help="default info"
    )


@command("serve", "serve a model: a web page to try photos, and an HTTP API (POST /predict)", _add_serve)
def _run_serve(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "python_multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise CitysegError(
            f"cityseg serve needs {', '.join(missing)}: "
            "pip install fastapi uvicorn python-multipart (or cityseg[serve])"
        )
    from cityseg.serve import ServeSettings, serve

    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_side=args.max_side,
        queue_size=args.queue_size,
        max_batch=args.max_batch,
    )
    serve(
        args.model,
        host=args.host,
        port=args.port,
        backend=args.backend,
        onnx_file=args.onnx,
        threads=args.threads,
        settings=settings,
        log_level=args.log_level,
    )
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
