"""Where a training step of a recipe spends its time, and what each speed-up of the recipe buys.

Three measurements on the real pairs, each in a fresh subprocess, all in one run so they compare:

* ``phases``: one recipe's step cut into its phases, on real batches from its own DataLoader: waiting for
  the batch, forward through the encoder, through the decoder and head, each loss term, backward and
  the optimiser step (wall time, median over the timed steps), and torch.profiler's top operators.
* ``lightning``: the same recipe through Lightning with its SimpleProfiler, a validation round included:
  the share of loading, the training step, backward, the optimiser, validation and the callbacks.
* ``variants``: training images per second of the whole pipeline (cityseg's DataModule and
  LightningModule) for the recipe as it was and with each change, one change per row, then all of them.

Usage (from the repository root)::

    .venv/bin/python benchmarks/step_profile.py                      # all three, the cpu-hour recipe
    .venv/bin/python benchmarks/step_profile.py --only variants --steps 30
    .venv/bin/python benchmarks/step_profile.py --only curve --steps 200    # exact changes keep the loss curve
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from training import measuring_trainer  # benchmarks/training.py: a script's own folder is on sys.path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the cityseg CLI does

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs"  # never copied into the repository
# the cpu-hour recipe as it was before the speed work, and each change on its own (config overrides)
SMP_DICE = "smp-dice"  # not a setting: the child process puts smp's DiceLoss back in the loss registry
BEFORE = [
    SMP_DICE,
    "model.decoder_width=0",
    "optim.fused=false",
    "augment.crop=192,192",
    "augment.scale=0.75,1.5",
    "data.workers=1",
]
CHANGES = {
    "fused AdamW": ["optim.fused=true"],
    "lean Dice (exact)": [],  # drops SMP_DICE: cityseg's own Dice term
    "FPN decoder 128/64": ["model.decoder_width=128"],
}


def use_smp_dice() -> None:
    """The Dice term as it was: smp's DiceLoss, which builds a one-hot copy of the masks."""
    from segmentation_models_pytorch.losses import DiceLoss

    from cityseg.classes import IGNORE_INDEX
    from cityseg.loss_registry import LOSS_TERMS

    LOSS_TERMS["dice"] = lambda weights, optim: DiceLoss("multiclass", ignore_index=IGNORE_INDEX)


def recipe_config(args: argparse.Namespace, overrides: list[str], cache_dir: str):
    from cityseg.config import Config

    if SMP_DICE in args.set:
        use_smp_dice()
        args.set = [item for item in args.set if item != SMP_DICE]

    config = Config.from_yaml(args.recipe)
    config.data.root = str(args.data)
    config.data.limit = args.limit
    config.data.cache_dir = cache_dir
    config.train.progress = False
    config.override([*overrides, *args.set])
    return config


def _prepared(args: argparse.Namespace, overrides: list[str]):
    import lightning as L

    from cityseg.datasets import prepare_labels
    from cityseg.devices import configure_threads
    from cityseg.splits import split_dataset

    config = recipe_config(args, overrides, args.cache_dir)
    configure_threads(config)
    L.seed_everything(0, workers=True, verbose=False)
    splits, cache, _ = prepare_labels(config, split_dataset(config)[0], progress=False)
    return config, splits, cache


def measure_phases(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Each phase of a step on real batches, timed with the wall clock; torch.profiler's top operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cityseg.optim import make_optimizer
    from cityseg.training import SegDataModule, SegModule

    config, splits, cache = _prepared(args, overrides)
    datamodule = SegDataModule(config, splits, cache)
    datamodule.setup("fit")
    module = SegModule(config, cache.labeller.class_set.names)
    net, criterion = module.net, module.criterion
    optimizer = make_optimizer([p for p in net.parameters() if p.requires_grad], config.optim)
    batches = iter(datamodule.train_dataloader())
    times: dict[str, list[float]] = {}

    def step(record: bool) -> None:
        marks = [("start", time.perf_counter())]
        images, masks = next(batches)
        marks.append(("load batch", time.perf_counter()))
        images = images.contiguous(memory_format=torch.channels_last) if config.train.channels_last else images
        features = net.encoder(images)
        marks.append(("forward: encoder", time.perf_counter()))
        logits = net.segmentation_head(net.decoder(features))
        marks.append(("forward: decoder + head", time.perf_counter()))
        loss = 0.0
        for term in criterion.terms:
            loss = loss + getattr(criterion, term)(logits, masks)
            marks.append((f"loss: {term}", time.perf_counter()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(("backward", time.perf_counter()))
        optimizer.step()
        marks.append(("optimizer step", time.perf_counter()))
        if record:
            for (_, before), (name, after) in itertools.pairwise(marks):
                times.setdefault(name, []).append(after - before)

    net.train()
    for _ in range(args.warmup):
        step(record=False)
    for _ in range(args.steps):
        step(record=True)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(3):
            step(record=False)
    top = [
        (event.key, event.self_cpu_time_total / 3 / 1e6)
        for event in sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    ]
    return {"phases": {name: statistics.median(values) for name, values in times.items()}, "top_ops": top}


def measure_lightning(args: argparse.Namespace, overrides: list[str]) -> dict:
    """The recipe through Lightning's loop for ``args.steps`` steps and one validation round, SimpleProfiler on."""
    from lightning.pytorch.profilers import SimpleProfiler

    from cityseg.training import SegDataModule, SegModule

    config, splits, cache = _prepared(args, overrides)
    profiler = SimpleProfiler()
    steps = args.steps + args.warmup
    trainer = measuring_trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=args.val_batches,
        val_check_interval=steps,
        profiler=profiler,
    )
    started = time.perf_counter()
    trainer.fit(SegModule(config, cache.labeller.class_set.names), datamodule=SegDataModule(config, splits, cache))
    total = time.perf_counter() - started
    rows = {}
    for action, durations in profiler.recorded_durations.items():
        rows[action] = (sum(durations), len(durations))
    return {"total_s": total, "actions": rows}


def measure_speed(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Training images per second through cityseg's DataModule and LightningModule (steps after warm-up)."""
    from lightning.pytorch.callbacks import Callback

    from cityseg.training import SegDataModule, SegModule

    config, splits, cache = _prepared(args, overrides)
    starts: list[float] = []

    class StepStarts(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            starts.append(time.perf_counter())

    losses: list[float] = []

    class Losses(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = measuring_trainer(
        max_epochs=-1,  # as many epochs as the steps need (data order seeded), then stop at max_steps
        max_steps=args.steps + args.warmup + 1,
        limit_val_batches=0,
        callbacks=[StepStarts(), Losses()],
    )
    cpu = time.process_time()
    trainer.fit(SegModule(config, cache.labeller.class_set.names), datamodule=SegDataModule(config, splits, cache))
    cycle = [b - a for a, b in zip(starts[args.warmup :], starts[args.warmup + 1 :], strict=False)]
    crop = config.augment.crop if min(config.augment.crop) > 0 else config.data.size
    return {
        "step_s": statistics.median(cycle),
        "images_per_s": config.data.batch_size / statistics.median(cycle),
        "cpu_s": time.process_time() - cpu,
        "crop": list(crop),
        "loss_first": losses[0],
        "loss_last": statistics.mean(losses[-5:]),
        "losses": losses,
    }


MEASURES = {"phases": measure_phases, "lightning": measure_lightning, "speed": measure_speed}


def child(args: argparse.Namespace, what: str, overrides: list[str]) -> dict:
    command = [sys.executable, __file__, "--child", what, "--recipe", args.recipe, "--data", str(args.data)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--limit", str(args.limit)]
    command += ["--cache-dir", args.cache_dir, "--val-batches", str(args.val_batches)]
    for assignment in [*overrides, *args.set]:
        command += ["--set", assignment]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        sys.exit(f"{what} {overrides} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def phase_table(result: dict, title: str) -> list[str]:
    phases = result["phases"]
    total = sum(phases.values())
    rows = [f"**{title}**: {total:.3f} s per step", "", "| phase | s | share |", "|---|---:|---:|"]
    rows += [f"| {name} | {seconds:.3f} | {seconds / total:.0%} |" for name, seconds in phases.items()]
    rows += ["", "| top operators (torch.profiler, self CPU) | s per step |", "|---|---:|"]
    rows += [f"| `{name}` | {seconds:.3f} |" for name, seconds in result["top_ops"][:8]]
    return [*rows, ""]


def lightning_table(result: dict, title: str) -> list[str]:
    total = result["total_s"]
    rows = [
        f"**{title}**: {total:.1f} s in all",
        "",
        "| Lightning action | s | calls | share |",
        "|---|---:|---:|---:|",
    ]
    ranked = sorted(result["actions"].items(), key=lambda item: item[1][0], reverse=True)
    rows += [f"| `{name}` | {s:.2f} | {n} | {s / total:.0%} |" for name, (s, n) in ranked[:10]]
    return [*rows, ""]


def variant_table(args: argparse.Namespace, new: list[str]) -> list[str]:
    rows = [
        "| recipe | crop | s/step | images/s | vs before | loss, first step | loss, last 5 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    variants = {"before (cpu-hour as it was)": BEFORE}
    for name, change in CHANGES.items():
        before = [item for item in BEFORE if item != SMP_DICE] if name.startswith("lean Dice") else BEFORE
        variants[f"before + {name}"] = before + change
    variants[f"now (configs/{args.recipe})"] = new
    base = None
    for name, overrides in variants.items():
        result = child(args, "speed", overrides)
        base = base or result["images_per_s"]
        crop = "x".join(str(v) for v in result["crop"])
        rows.append(
            f"| {name} | {crop} | {result['step_s']:.3f} | {result['images_per_s']:.2f} | "
            f"{result['images_per_s'] / base:.2f}x | {result['loss_first']:.3f} | {result['loss_last']:.3f} |"
        )
    return [*rows, ""]


def curve_table(args: argparse.Namespace) -> list[str]:
    """The loss curve of the recipe as it was against the same recipe with only the exact changes."""
    exact = [item for item in BEFORE if item != SMP_DICE] + ["optim.fused=true"]
    before = child(args, "speed", BEFORE)["losses"]
    after = child(args, "speed", exact)["losses"]
    steps = min(len(before), len(after))
    rows = [
        f"Loss of the first {steps} steps, the recipe as it was against it with the exact changes only "
        "(fused AdamW, the lean Dice), same seed and data order:",
        "",
        "| steps | mean loss, before | mean loss, exact changes | largest difference at one step |",
        "|---|---:|---:|---:|",
    ]
    for start in range(0, steps, 50):
        a, b = before[start : start + 50], after[start : start + 50]
        largest = max(abs(x - y) for x, y in zip(a, b, strict=False))
        rows.append(
            f"| {start + 1}-{start + len(a)} | {statistics.mean(a):.4f} | {statistics.mean(b):.4f} | {largest:.4f} |"
        )
    return [*rows, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="cpu-hour", help="a preset or YAML file")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--steps", type=int, default=20, help="timed steps after --warmup")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--limit", type=int, default=300, help="pairs read (enough for the steps)")
    parser.add_argument("--val-batches", type=int, default=10, help="validation batches in the Lightning profile")
    parser.add_argument("--cache-dir", default="", help="label cache (default: the user's)")
    parser.add_argument("--only", choices=("phases", "lightning", "variants", "curve"), action="append")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", choices=tuple(MEASURES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(MEASURES[args.child](args, [])))
        return
    if not args.data.is_dir():
        sys.exit(f"no real pairs at {args.data}: this benchmark needs the Cityscapes pairs there")
    only = set(args.only or ("phases", "lightning", "variants"))
    lines = [f"`python benchmarks/step_profile.py {' '.join(argv or sys.argv[1:])}`, {time.strftime('%Y-%m-%d')}", ""]
    if "phases" in only:
        lines += phase_table(child(args, "phases", BEFORE), "before: the step of the cpu-hour recipe as it was")
        lines += phase_table(child(args, "phases", []), f"now: the step of configs/{args.recipe}")
    if "lightning" in only:
        lines += lightning_table(child(args, "lightning", BEFORE), "before, through Lightning")
        lines += lightning_table(child(args, "lightning", []), "now, through Lightning")
    if "variants" in only:
        lines += variant_table(args, [])
    if "curve" in only:  # not in the default set: it trains --steps steps twice (200 steps: about 7 minutes)
        lines += curve_table(args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
