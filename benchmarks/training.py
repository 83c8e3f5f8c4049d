"""Training throughput and memory: cityseg's Lightning loop against a bare forward+backward+step loop.

Two measurements, each in a fresh subprocess so peaks and caches do not leak between them:

* ``speed``: images/s of ``cityseg.training`` (LightningModule, DataModule with its loader workers,
  augmentation, metrics, logging) against the same network, loss and optimiser stepping on batches
  already in memory. The difference is the pipeline's overhead (target: at most 10%).
* ``memory``: peak resident memory (the process and its loader workers) of the same training steps on
  300 and on 2975 pairs. Data is streamed, so the peak should not grow with the dataset (target: <= 1.2x).

Run from the repository root (defaults: U-Net/ResNet34 at 256x256 on the shared Cityscapes pairs)::

    .venv/bin/python benchmarks/training.py                  # prints a Markdown table
    .venv/bin/python benchmarks/training.py --append BENCHMARKS.md

CPU time (``time.process_time`` of the training process) is reported beside wall time: on a machine
shared with other work, wall time measures the neighbours as much as the code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# as the cityseg CLI does: idle OpenMP threads sleep rather than spin (see cli._passive_cpu_threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs"  # never copied into the repository


def make_config(args: argparse.Namespace, limit: int, cache_dir: str):
    from cityseg.config import Config

    config = Config()
    config.data.root = str(args.data)
    config.data.limit = limit
    config.data.cache_dir = cache_dir
    config.override(
        [
            f"data.size={args.size},{args.size}",
            f"data.batch_size={args.batch_size}",
            f"data.workers={args.workers}",
            f"model.arch={args.arch}",
            f"model.encoder={args.encoder}",
            f"train.threads={args.threads}",
            "train.progress=false",
            "train.max_epochs=1",
            *args.set,
        ]
    )
    return config


def measuring_trainer(**options):
    """A CPU Lightning Trainer that measures and keeps nothing: no logger, checkpoints, progress bar, model
    summary or sanity validation. ``options`` set the rest (steps, validation, callbacks, profiler); the step
    profile benchmark builds its Trainers here too."""
    import lightning as L

    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    quiet |= {"enable_model_summary": False, "num_sanity_val_steps": 0, "accelerator": "cpu"}
    return L.Trainer(**quiet, **options)


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of its finished children (loader workers), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # Linux reports KiB


def run_lightning(args: argparse.Namespace, limit: int) -> dict:
    """``args.steps`` training steps through cityseg's DataModule and LightningModule; timed per step."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from cityseg.datasets import prepare_labels
    from cityseg.devices import configure_threads
    from cityseg.splits import split_dataset
    from cityseg.training import SegDataModule, SegModule

    cache = tempfile.mkdtemp(prefix="cityseg-bench-cache-") if args.fresh_cache else ""
    config = make_config(args, limit, cache)
    configure_threads(config)
    L.seed_everything(0, workers=True, verbose=False)
    splits, _ = split_dataset(config)
    splits, label_cache, _ = prepare_labels(config, splits, progress=False)

    class StepTimer(Callback):
        def __init__(self):
            self.wall, self.cpu = [], []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self._wall, self._cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.wall.append(time.perf_counter() - self._wall)
            self.cpu.append(time.process_time() - self._cpu)

    timer = StepTimer()
    # between steps is where a slow loader would show: time whole steps, from one batch start to the next
    started: list[float] = []

    class Between(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            started.append(time.perf_counter())

    trainer = measuring_trainer(
        max_epochs=1, limit_train_batches=args.steps + args.warmup, limit_val_batches=0, callbacks=[timer, Between()]
    )
    datamodule = SegDataModule(config, splits, label_cache)
    module = SegModule(config, label_cache.labeller.class_set.names)
    trainer.fit(module, datamodule=datamodule)
    cycle = [b - a for a, b in zip(started[args.warmup :], started[args.warmup + 1 :], strict=False)]
    return {
        "pairs": sum(len(paths) for paths in splits.values()),
        "images": len(splits["train"]),
        "step_s": statistics.median(cycle),
        "step_cpu_s": statistics.median(timer.cpu[args.warmup :]),
        "peak_rss_mib": peak_rss_mib(),
    }


def run_bare(args: argparse.Namespace) -> dict:
    """The same network, loss and optimiser on a batch already in memory: the cost of the maths alone."""
    import torch

    from cityseg.classes import IGNORE_INDEX
    from cityseg.config import Config
    from cityseg.devices import configure_threads
    from cityseg.training import SegModule

    config = make_config(args, 0, "")
    configure_threads(config)
    torch.manual_seed(0)
    net = SegModule(config, [f"c{i}" for i in range(19)]).net
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=Config().optim.weight_decay)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    images = torch.randn(args.batch_size, 3, args.size, args.size)
    masks = torch.randint(0, 19, (args.batch_size, args.size, args.size))
    wall, cpu = [], []
    for step in range(args.steps + args.warmup):
        w, c = time.perf_counter(), time.process_time()
        loss = criterion(net(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return {"step_s": statistics.median(wall), "step_cpu_s": statistics.median(cpu), "peak_rss_mib": peak_rss_mib()}


def in_subprocess(args: argparse.Namespace, what: str, limit: int = 0) -> dict:
    """Run one measurement in a fresh interpreter (clean memory peak) and return its JSON result."""
    options = {
        "--data": args.data,
        "--arch": args.arch,
        "--encoder": args.encoder,
        "--size": args.size,
        "--batch-size": args.batch_size,
        "--workers": args.workers,
        "--threads": args.threads,
        "--steps": args.steps,
        "--warmup": args.warmup,
        "--limit": limit,
        "--child": what,
    }
    command = [sys.executable, __file__, *(str(x) for pair in options.items() for x in pair)]
    if args.fresh_cache:
        command.append("--fresh-cache")
    for assignment in args.set:
        command += ["--set", assignment]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark step {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="dataset folder (default: the shared pairs)")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--small", type=int, default=300, help="pairs in the small memory run")
    parser.add_argument("--fresh-cache", action="store_true", help="label into a new cache (times labelling too)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config setting")
    parser.add_argument("--append", type=Path, help="append the results under '## Training' to this Markdown file")
    parser.add_argument("--child", choices=("bare", "lightning"), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.child:
        result = run_bare(args) if args.child == "bare" else run_lightning(args, args.limit)
        print(json.dumps(result))
        return
    if not args.data.is_dir():
        sys.exit(f"no dataset at {args.data}: pass --data (the shared Cityscapes pairs are not in this checkout)")
    bare = in_subprocess(args, "bare")
    small = in_subprocess(args, "lightning", args.small)
    full = in_subprocess(args, "lightning", 0)
    per_image = {name: r["step_s"] / args.batch_size for name, r in (("bare", bare), ("small", small), ("full", full))}
    overhead = full["step_s"] / bare["step_s"] - 1
    cpu_overhead = full["step_cpu_s"] / bare["step_cpu_s"] - 1
    memory_ratio = full["peak_rss_mib"] / small["peak_rss_mib"]
    table = [
        "## Training",
        "",
        f"`python benchmarks/training.py` — {args.arch}/{args.encoder} at {args.size}x{args.size}, batch "
        f"{args.batch_size}, {args.workers} loader workers, {args.steps} timed steps after {args.warmup}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{args.threads or 'all'}; {time.strftime('%Y-%m-%d')}.",
        "",
        "| run | images/s (wall) | s/step (wall) | s/step (CPU) | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| bare forward+backward+step | {1 / per_image['bare']:.2f} | {bare['step_s']:.3f} | "
        f"{bare['step_cpu_s']:.3f} | {bare['peak_rss_mib']:.0f} |",
        f"| cityseg Lightning, {small['pairs']} pairs ({small['images']} train) | {1 / per_image['small']:.2f} | "
        f"{small['step_s']:.3f} | {small['step_cpu_s']:.3f} | {small['peak_rss_mib']:.0f} |",
        f"| cityseg Lightning, {full['pairs']} pairs ({full['images']} train) | {1 / per_image['full']:.2f} | "
        f"{full['step_s']:.3f} | {full['step_cpu_s']:.3f} | {full['peak_rss_mib']:.0f} |",
        "",
        f"Overhead of the pipeline over the bare loop: {overhead:+.1%} wall, {cpu_overhead:+.1%} CPU "
        f"(target <= +10%). Peak memory, {full['pairs']} vs {small['pairs']} pairs: {memory_ratio:.2f}x "
        "(target <= 1.2x).",
        "",
    ]
    text = "\n".join(table)
    print(text)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
