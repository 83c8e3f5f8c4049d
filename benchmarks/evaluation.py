"""Evaluation memory benchmark: peak memory of scoring 300 versus all 2975 real pairs.

Each count runs in a fresh process: label the pairs into a temporary cache (not measured: the labelling
benchmark measures that), then score them as ``cityseg evaluate`` does (``PairDataset`` streaming photos and
cached labels through a DataLoader worker, ``evaluate_model`` accumulating one confusion matrix). Peak RSS
of the scoring process (VmHWM, reset after labelling where the kernel allows) and of its loader worker.
Memory must not grow with the number of images (goal: at most 1.2x).

The network's weights do not change its memory, so by default it is a randomly initialised U-Net/ResNet34
(the default model); ``--model`` scores a trained model folder instead.

Usage:
    python benchmarks/evaluation.py [--counts 300 2975] [--arch unet --encoder resnet34] [--model DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the cityseg CLI does

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs" / "train"  # never copied into the repository


def _vm(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def score(count: int, args: argparse.Namespace) -> dict:
    """Child mode: label, then score ``count`` pairs; peak memory of the scoring."""
    import torch
    from torch.utils.data import DataLoader

    from cityseg.datasets import PairDataset, normalization
    from cityseg.evaluation import evaluate_model
    from cityseg.labels import LabelCache, PaletteLabeller, label_dataset
    from cityseg.pairs import list_images
    from cityseg.transforms import eval_transform

    torch.set_num_threads(args.threads)
    paths = list_images(DATA)[:count]
    labeller = PaletteLabeller()
    with tempfile.TemporaryDirectory() as cache:
        label_dataset(paths, labeller, cache_dir=cache, workers=2, progress=False)
        with contextlib.suppress(OSError):  # peak memory from here on only ("5" resets VmHWM on Linux)
            Path("/proc/self/clear_refs").write_text("5")
        before = _vm("VmHWM:")
        if args.model:
            from cityseg.models import load_model

            net, info = load_model(args.model)
            mean, std, size, classes = info.mean, info.std, info.input_size, info.num_classes
        else:
            import segmentation_models_pytorch as smp

            net = smp.create_model(args.arch, encoder_name=args.encoder, encoder_weights=None, classes=19)
            (mean, std), size, classes = normalization(args.encoder), (256, 256), 19
        dataset = PairDataset(paths, LabelCache(labeller, cache_dir=cache), eval_transform(size, mean, std))
        loader = DataLoader(dataset, batch_size=8, num_workers=1)
        started = time.perf_counter()
        _, confmat = evaluate_model(net, loader, classes)
        seconds = time.perf_counter() - started
        assert confmat.sum() > 0, "nothing was scored"
        worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # labelling pool included
    return {"images": count, "peak_mib": _vm("VmHWM:"), "before_mib": before, "worker_mib": worker, "s": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 2975])
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--model", help="a trained model folder (default: random weights)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(score(args.child, args)))
        return
    if not DATA.is_dir():
        raise SystemExit(f"no real pairs at {DATA}: this benchmark needs the Cityscapes pairs there")
    rows = []
    for count in args.counts:
        command = [sys.executable, __file__, "--child", str(count), "--arch", args.arch, "--encoder", args.encoder]
        command += ["--threads", str(args.threads)] + (["--model", args.model] if args.model else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| images scored | peak RSS MiB (scoring process) | loader worker peak MiB | seconds | images/s |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['images']} | {row['peak_mib']:.0f} | {row['worker_mib']:.0f} | {row['s']:.0f} | "
            f"{row['images'] / row['s']:.1f} |"
        )
    ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
    print(f"\nPeak memory, {rows[-1]['images']} vs {rows[0]['images']} images: {ratio:.2f}x (goal <= 1.2x)")
    print(f"command: python benchmarks/evaluation.py {' '.join(argv or sys.argv[1:])}")


if __name__ == "__main__":
    main()
