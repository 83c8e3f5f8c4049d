"""Recipe sweep: variants of configs/cpu-hour.yaml, each trained for the steps a CPU hour gives it, side by side.

An hour alone on the 2-core machine decides one recipe; a GPU can answer "which variant is better after the
same amount of CPU time" for many at once, if each variant gets the number of steps that the CPU hour
would give it (``train.max_steps``, so the learning-rate schedule spans exactly those steps). The steps per
CPU hour come from the 60-minute run of the recipe (5160, BENCHMARKS.md) scaled by each variant's step time
on the CPU relative to the recipe's (``benchmarks/step_profile.py``): a larger encoder or a larger crop
gets fewer steps. Every variant trains on the same block split (whole cities held out) and is tested at the
end, as ``benchmarks/accuracy.py`` does, all of them at the same time on one machine.

Usage:
    python benchmarks/recipe_sweep.py --data DATA --accelerator gpu [--only base,ema] [--deadline 3600]
    python benchmarks/recipe_sweep.py --table RUNS_DIR     # the markdown table of a finished sweep

The variants are in :data:`VARIANTS`; a variant killed at the deadline reports its validation curve.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs" / "train"  # never copied into the repository
CPU_HOUR_STEPS = 5160  # configs/cpu-hour.yaml in 60 minutes on the 2-core machine (BENCHMARKS.md, accuracy)

# name -> (steps a CPU hour gives it, overrides of configs/cpu-hour.yaml)
VARIANTS: dict[str, tuple[int, list[str]]] = {
    "cpu-hour": (CPU_HOUR_STEPS, []),
    "EMA of the weights (0.999, from step 500)": (5100, ["train.ema_decay=0.999", "train.ema_start_step=500"]),
    "OHEM + Dice": (5000, ["optim.loss=ohem+dice"]),
    "EfficientNet-Lite1 (1.19x the step time)": (4340, ["model.encoder=timm-tf_efficientnet_lite1"]),
    "EfficientNet-Lite2 (1.22x the step time)": (4230, ["model.encoder=timm-tf_efficientnet_lite2"]),
    "last epoch on whole photos": (4940, ["augment.final_epochs=1"]),
    "scale 0.5-2.0": (CPU_HOUR_STEPS, ["augment.scale=0.5,2.0"]),
    "weight decay 0.01": (CPU_HOUR_STEPS, ["optim.weight_decay=0.01"]),
    "crops 256x256 (1.78x the pixels)": (2900, ["augment.crop=256,256"]),
    "rare-class sampling (T 0.01)": (CPU_HOUR_STEPS, ["data.rare_class_temperature=0.01"]),
    "recipe before (FPN 256/128, AdamW unfused; 2373 steps in its hour)": (
        2373,
        ["model.decoder_width=0", "optim.fused=false"],
    ),
    "cpu-hour, random split (official)": (CPU_HOUR_STEPS, ["data.split=official"]),
}


def command(data: Path, runs: Path, steps: int, overrides: list[str], accelerator: str, workers: int) -> list[str]:
    """The ``cityseg train`` of one variant: the benchmark's split (450 test pairs), its steps, no time budget."""
    sets = [
        "data.split=blocks",
        f"data.test_fraction={450 / 2975}",
        f"data.workers={workers}",
        f"train.runs_dir={runs}",
        f"train.max_steps={steps}",
        "train.budget_minutes=0",
        "train.max_epochs=1000",
        "train.patience=1000",
        f"train.accelerator={accelerator}",
        "train.devices=1",
        "train.threads=1",
        "train.progress=false",
        *overrides,
    ]
    args = [sys.executable, "-m", "cityseg.cli", "train", str(data), "--config", "cpu-hour"]
    for item in sets:
        args += ["--set", item]
    return args


def scores(runs: Path) -> dict:
    """Test scores (metrics.json) and the validation curve (CSV logs) of the newest run under ``runs``."""
    found = sorted(p for p in runs.glob("2*") if p.is_dir())
    if not found:
        return {}
    run, result = found[-1], {}
    if (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
        result = {key: metrics[key] for key in ("aAcc", "mAcc", "mIoU", "images")}
        result["per_class"] = {name: entry["iou"] for name, entry in metrics["per_class"].items()}
    curve = []
    for log in sorted(run.glob("csv/*/metrics.csv")):
        with open(log, newline="") as handle:
            curve += [(int(row["step"]), float(row["val_mIoU"])) for row in csv.DictReader(handle) if row["val_mIoU"]]
    result["val_mIoU"] = sorted(set(curve))
    return result


def sweep(args: argparse.Namespace) -> None:
    chosen = {name: v for name, v in VARIANTS.items() if not args.only or any(k in name for k in args.only.split(","))}
    started, procs = time.monotonic(), {}
    for index, (name, (steps, overrides)) in enumerate(chosen.items()):
        runs = args.runs_dir / f"variant{index:02d}"
        (runs).mkdir(parents=True, exist_ok=True)
        (runs / "variant.txt").write_text(name + "\n")
        log = open(runs / "train.log", "w")  # noqa: SIM115 (closed when the process ends)
        steps = max(1, round(steps * args.steps_scale))
        cmd = command(args.data, runs, steps, overrides, args.accelerator, args.workers)
        cmd += [item for value in args.set for item in ("--set", value)]
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)), log)
    while procs:
        time.sleep(10)
        late = time.monotonic() - started > args.deadline
        for name, (proc, log) in list(procs.items()):
            if proc.poll() is None and late:
                proc.kill()
            if proc.poll() is not None or late:
                log.close()
                print(f"{name}: exit {proc.poll()} after {time.monotonic() - started:.0f} s", flush=True)
                del procs[name]
    print(table(args.runs_dir))


def table(runs_dir: Path) -> str:
    lines = ["| variant | steps | test mIoU | aAcc | mAcc | last validation mIoU (step) |"]
    lines.append("|---|---:|---:|---:|---:|---|")
    for runs in sorted(runs_dir.glob("variant*")):
        name = (runs / "variant.txt").read_text().strip()
        result = scores(runs)
        curve = result.get("val_mIoU") or [(0, float("nan"))]
        test = "mIoU" in result
        cells = [f"{result[k]:.3f}" if k == "mIoU" else f"{100 * result[k]:.2f}%" for k in ("mIoU", "aAcc", "mAcc")]
        steps = curve[-1][0] if not test else VARIANTS.get(name, ("?",))[0]
        lines.append(
            f"| {name} | {steps} | {' | '.join(cells) if test else ' | | '} | {curve[-1][1]:.3f} ({curve[-1][0]}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "sweep")
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per variant")
    parser.add_argument("--only", default="", help="comma-separated parts of variant names")
    parser.add_argument("--deadline", type=float, default=3600, help="seconds before unfinished variants are stopped")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scale every variant's steps (a quick check)")
    parser.add_argument("--set", action="append", default=[], help="extra --set for every variant (e.g. data.limit=40)")
    parser.add_argument("--table", type=Path, help="print the table of a finished sweep's runs folder and exit")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    sweep(args)


if __name__ == "__main__":
    main()
