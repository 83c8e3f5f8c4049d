"""``cityseg train``, ``cityseg evaluate`` and ``cityseg demo``."""

from __future__ import annotations

import argparse

from cityseg import defaults
from cityseg.cli.registry import add_config_args, add_dataset_options, add_tta, command, load_config, options_from_args
from cityseg.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from cityseg.demo import DEMO_SCENES
from cityseg.errors import CitysegError

# ---- train, evaluate, demo (training helper) ---------------------------------------------------

# flag -> config setting; a flag given on the command line overrides the config file and --set
TRAIN_FLAGS = {
    "arch": "model.arch",
    "encoder": "model.encoder",
    "encoder_weights": "model.encoder_weights",
    "init": "model.init",
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
    "classes": "labels.classes",
    "label_format": "data.label_format",
    "skip_bad": "data.skip_bad",
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


def _side(size: tuple[int, int]) -> str:
    """A (height, width) the way --size takes it: ``256`` when square, else ``256x512``."""
    height, width = size
    return f"{height}" if height == width else f"{height}x{width}"


def _add_skip_bad(parser) -> None:
    """``--skip-bad`` of train and evaluate (a parser or a group): None unless given, so the config decides."""
    parser.add_argument(
        "--skip-bad",
        action="store_const",
        const=True,
        help="leave out unreadable images, photos without a label and labels without a photo (listed)",
    )


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data", nargs="?", help="dataset folder: pairs (train/ and val/, or one folder), KITTI, images/+labels/ ..."
    )
    add_config_args(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--arch", help=f"smp architecture, e.g. unet, fpn, deeplabv3plus (default {ModelConfig.arch})")
    model.add_argument(
        "--encoder", help=f"smp encoder, e.g. resnet34, mobilenet_v2, tu-<timm name> (default {ModelConfig.encoder})"
    )
    model.add_argument(
        "--encoder-weights",
        metavar="imagenet|none|PATH",
        help=f"encoder initialisation (default {ModelConfig.encoder_weights})",
    )
    model.add_argument(
        "--init",
        metavar="MODEL",
        help="fine-tune a trained model: a run, a model folder, a built-in model or a Hub repository owner/name; "
        "its whole network (architecture included) is the start; with other classes its last layer starts afresh",
    )
    data = parser.add_argument_group("data and optimisation")
    data.add_argument(
        "--size", metavar="H[xW]", help=f"training resolution, e.g. 256 or 256x512 (default {_side(DataConfig.size)})"
    )
    data.add_argument("--batch-size", metavar="N", help=f"images per step and device (default {DataConfig.batch_size})")
    data.add_argument("--epochs", metavar="N", help=f"maximum epochs (default {TrainConfig.max_epochs})")
    data.add_argument("--lr", metavar="LR", help=f"peak learning rate (default {OptimConfig.lr})")
    data.add_argument(
        "--split",
        choices=defaults.SPLITS,
        help=f"how images are held out (default {DataConfig.split}): official, blocks (whole cities) "
        "or seed (pooled 64/16/20)",
    )
    data.add_argument(
        "--workers", metavar="N", help=f"DataLoader and labelling worker processes (default {DataConfig.workers})"
    )
    add_dataset_options(data)
    _add_skip_bad(data)
    run = parser.add_argument_group("hardware and run")
    run.add_argument("--accelerator", help=f"cpu, gpu, mps or auto (default {TrainConfig.accelerator})")
    run.add_argument("--devices", help=f"devices per node, or auto (default {TrainConfig.devices})")
    run.add_argument("--num-nodes", metavar="N", help=f"machines (default {TrainConfig.num_nodes})")
    run.add_argument("--strategy", help=f"Lightning strategy: auto, ddp, ... (default {TrainConfig.strategy})")
    run.add_argument("--precision", help=f"32-true, bf16-mixed, 16-mixed ... (default {TrainConfig.precision})")
    run.add_argument("--budget-minutes", metavar="M", help="stop after M minutes, validation included; best kept")
    run.add_argument("--runs-dir", metavar="DIR", help=f"where run folders go (default {TrainConfig.runs_dir})")
    run.add_argument("--resume", metavar="RUN", help="continue RUN (e.g. runs/latest) from its last checkpoint")
    run.add_argument(
        "--from",
        dest="resume_from",
        choices=defaults.RESUME_FROM,
        default=defaults.RESUME_FROM[0],
        help="with --resume: the checkpoint to continue from (default %(default)s; best: the best validation)",
    )


@command("train", "train a segmentation model; writes a run folder under runs/", _add_train)
def _run_train(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    if args.resume:
        if args.config:
            raise CitysegError("--resume continues a run with its own config.yaml; change settings with --set or flags")
        from cityseg.run_folders import resolve_run

        config = Config.from_yaml(resolve_run(args.resume) / "config.yaml").override(args.set)
    else:
        config = load_config(args)
    if args.data:
        config.data.root = args.data
    apply_train_flags(config, args)
    if not config.data.root:
        raise CitysegError("no dataset: pass DATA (a folder of pair images) or set data.root")

    from cityseg.training import train

    run_dir = train(config, resume=args.resume, resume_from=args.resume_from)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # one summary, not one per training process
        _print_run_summary(run_dir)
    return 0


def _print_run_summary(run_dir) -> None:
    import json

    from cityseg.metrics import format_table

    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(format_table(metrics))
    print(f"run folder: {run_dir}\nreport:     {run_dir / 'report.html'}")


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN|MODEL",
        help="a run folder (runs/latest), a model folder, a built-in model or a Hub repository owner/name "
        "(the last three need --data)",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="DATA",
        help="dataset folder (default: the run's data.root); repeat it to compare datasets in one transfer table",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=defaults.EVAL_SPLITS,
        help="which split (default %(default)s; all: every labelled image)",
    )
    parser.add_argument(
        "--label-format",
        choices=defaults.LABEL_FORMATS,
        help="what the data's labels are (default: the run's for its own data, auto for other data)",
    )
    _add_skip_bad(parser)
    parser.add_argument("--baseline", action="store_true", help="also score the untrained model (same init seed)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default: the run's)")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (default: the run's)")
    parser.add_argument("--accelerator", help="cpu, gpu, auto (default: the run's)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where metrics.json and plots go (default: RUN/evaluations/SPLIT[-DATA][-OPTIONS]/, a folder of its "
        "own, so the run's test scores stay as they were)",
    )
    add_tta(parser, flip_default="the run's data.eval_flip")


@command(
    "evaluate",
    "score a trained model on the test split: aAcc, mAcc, mIoU, per-class IoU; on several datasets side by side",
    _add_evaluate,
)
def _run_evaluate(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    from cityseg.evaluation import EvaluateOptions, evaluate_run
    from cityseg.metrics import format_table

    options = options_from_args(
        EvaluateOptions, args, flip=True if args.tta else args.flip, scales=defaults.TTA_SCALES if args.tta else None
    )
    if args.data and len(args.data) > 1:
        from cityseg.transfer import evaluate_transfer

        table = evaluate_transfer(args.target, args.data, options, out=args.out)
        print(table)
        for column in table.columns:
            print(f"{column.name}: {column.written}")
        return 0
    result = evaluate_run(args.target, args.data[0] if args.data else None, options, out=args.out)
    if "baseline" in result:
        print("untrained baseline (same architecture and init seed):")
        print(format_table(result["baseline"]))
        print()
    print(format_table(result))
    print(f"metrics: {result['written']}")
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=defaults.DEMO_OUT, help="output folder (default %(default)s)")
    parser.add_argument("--count", type=int, default=DEMO_SCENES, help="scenes to generate (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for scenes, split and training (default 0)")
    add_config_args(parser)


@command("demo", "generate scenes, train a small model, evaluate and report, in about 10 minutes on a CPU", _add_demo)
def _run_demo(args: argparse.Namespace) -> int:
    _passive_cpu_threads()
    from cityseg.demo import run_demo

    # the packaged demo preset (or --config FILE), with any --set overrides
    config = Config.from_yaml(args.config or "demo").override(args.set)
    result = run_demo(args.out, count=args.count, seed=args.seed, config=config)
    print(result)
    return 0
