"""Smoothing benchmark: what ``--smooth`` does to flicker and to accuracy, on a generated drive with exact labels.

A model trained on generated scenes (``cityseg synth`` + ``cityseg train``) segments a generated drive
(``cityseg synth --video``), whose every frame comes with its exact label ids, once per smoothing weight.
For each weight: the flicker (the share of pixels whose class changes between consecutive frames, as the
``predict`` summary gives it), the true labels' own flicker (what a moving camera changes anyway), and
pixel accuracy and mIoU against the true labels over the whole drive (one confusion matrix).

Usage:
    python benchmarks/video_smoothing.py --model runs/SYNTH_RUN [--seconds 10] [--size 256x512]
        [--smooth 0,0.7,0.5,0.3] [--every 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the cityseg CLI does (see cli._passive_cpu_threads)


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    return int(height), int(width)


def score_drive(segmenter, summary, smooth: float, every: int) -> dict[str, float]:
    """Flicker, the truth's flicker, aAcc and mIoU of ``segmenter`` on the drive of ``summary``."""
    import numpy as np
    import torch
    from PIL import Image

    from cityseg.metrics import SegmentationMetrics
    from cityseg.video import iter_video
    from cityseg.video.summary import FlickerMeter

    classes = segmenter.class_set
    metrics = SegmentationMetrics(classes.num_classes)  # unknown label ids are ignored (from_label_ids: 255)
    flicker, truth_flicker = FlickerMeter(), FlickerMeter()
    for index, (_, labels) in enumerate(iter_video(segmenter, summary.video, smooth=smooth or None, every=every)):
        truth = classes.from_label_ids(np.asarray(Image.open(summary.label_path(index))))
        metrics.update(torch.from_numpy(labels[None].astype(np.int64)), torch.from_numpy(truth[None].astype(np.int64)))
        flicker.update(labels.copy())  # copied: with every > 1 consecutive frames share one labels array
        truth_flicker.update(truth)
    scores = metrics.compute()
    return {
        "flicker": flicker.share or 0.0,
        "truth flicker": truth_flicker.share or 0.0,
        "aAcc": float(scores["aAcc"]),
        "mIoU": float(scores["mIoU"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model trained on generated scenes (run or model folder)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the drive (default 10)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate (default 30)")
    parser.add_argument("--size", type=_size, default=(256, 512), help="HEIGHTxWIDTH of the drive (default 256x512)")
    parser.add_argument("--smooth", default="0,0.7,0.5,0.3", help="smoothing weights (0: off; default 0,0.7,0.5,0.3)")
    parser.add_argument("--every", type=int, default=1, help="segment one frame in N (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="the drive's seed")
    args = parser.parse_args(argv)

    from cityseg.engine import Segmenter
    from cityseg.synth.drive import write_drive

    with tempfile.TemporaryDirectory() as work:
        summary = write_drive(Path(work) / "drive.mp4", args.seconds, args.fps, args.size, args.seed)
        segmenter = Segmenter.from_pretrained(args.model)
        height, width = args.size
        print(f"generated drive: {summary.frames} frames of {height}x{width}, {args.fps} fps, seed {args.seed}")
        print("| --smooth | flicker | true labels' flicker | aAcc | mIoU |")
        print("|---|---:|---:|---:|---:|")
        for weight in (float(value) for value in args.smooth.split(",")):
            row = score_drive(segmenter, summary, weight, args.every)
            print(
                f"| {weight:g} | {row['flicker']:.1%} | {row['truth flicker']:.1%} | {row['aAcc']:.2%} "
                f"| {row['mIoU']:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
