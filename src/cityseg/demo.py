"""The demo: the whole pipeline on generated street scenes, in about ten minutes on a laptop CPU.

``cityseg demo`` (what ``make demo`` runs) does, in ``--out`` (default ``demo-output/``)::

    data/       300 generated scenes (cityseg synth): 240 in train/, 60 in val/ (the test set)
    cache/      their labels (palette labelling of the colour masks)
    runs/<t>/   a training run with the packaged ``demo`` preset: checkpoints, model/, metrics.json,
                plots/ and report.html (runs/latest points at it)
    predictions/  a few test photos segmented by the saved model (cityseg.engine.Segmenter)
    drive.mp4   a few seconds of a generated drive down one street (cityseg synth --video), with the exact
                label ids of every frame in drive_labelIds/
    drive-segmented/  that drive segmented by the saved model (``cityseg.video.predict_video``): drive_overlay.mp4

The ``demo`` preset (``cityseg/configs/demo.yaml``) is a U-Net with an EfficientNet-Lite0 encoder (ImageNet
weights that work offline), trained on 128x128 crops of the 256x256 scenes to recognise the 7 Cityscapes
categories, under a fixed time budget (``train.budget_minutes``), so the demo's length barely depends on
the machine; the budget planner fits the learning-rate schedule to it (see
:class:`cityseg.training.BudgetPlanner`). ``cityseg demo --set labels.classes=train19`` trains the 19
classes instead (a lower mIoU in the same time).

Example:
    >>> result = run_demo("demo-output")  # doctest: +SKIP
    >>> result.miou > 0.7  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cityseg.config import Config
from cityseg.defaults import DEMO_OUT
from cityseg.files import ensure_writable_dir

if TYPE_CHECKING:
    from cityseg.synth import DriveSummary

DEMO_SCENES = 300  # scenes generated
DEMO_TEST_FRACTION = 0.2  # share of them written to val/, the test set of the official split
PREDICTION_COUNT = 4  # test photos segmented by the saved model at the end
DRIVE_SECONDS = 3.0  # the generated drive segmented at the very end ...
DRIVE_FPS = 10  # ... at this frame rate, at the size the model was trained on


CLASS_SET_NAMES = {"categories": "Cityscapes categories", "train19": "train classes", "labelids": "label ids"}


@dataclass
class DemoResult:
    """What the demo made and how long each step took; ``str()`` is the summary ``cityseg demo`` prints."""

    out: Path
    run_dir: Path
    report: Path
    miou: float | None
    classes: str = ""  # what the mIoU averages over: the classes present in the test scenes, e.g. "7 categories"
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall-clock seconds
    predictions: list[Path] = field(default_factory=list)
    drive: Path | None = None  # the generated drive video ...
    drive_labels: Path | None = None  # ... and the folder of its exact label ids, one PNG per frame
    segmented_drive: Path | None = None  # the model's segmentation of it, as an overlay video
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
        miou = "n/a" if self.miou is None else f"{self.miou:.3f}"
        lines = [
            f"demo finished in {sum(self.seconds.values()) / 60:.1f} min ({steps})",
            f"test mIoU {miou} over {self.classes} (those present) on the generated test scenes",
            f"run folder: {self.run_dir}",
            f"report:     {self.report}",
        ]
        if self.predictions:
            lines.append(f"predictions: {self.predictions[0].parent} ({len(self.predictions)} images)")
        if self.drive is not None:
            lines.append(f"drive:      {self.drive} (generated; exact label ids per frame in {self.drive_labels})")
        if self.segmented_drive is not None:
            lines.append(f"segmented:  {self.segmented_drive} (the drive segmented by the model)")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def demo_config(out: str | os.PathLike, seed: int = 0, config: Config | None = None) -> Config:
    """The packaged ``demo`` preset (or ``config``) pointed at the demo's data, cache and runs folders."""
    config = config if config is not None else Config.from_yaml("demo")
    out = Path(out)
    config.data.root = str(out / "data")
    config.data.cache_dir = str(out / "cache")  # keep everything the demo writes under --out
    config.train.runs_dir = str(out / "runs")
    config.train.seed = seed
    return config


def run_demo(
    out: str | os.PathLike = DEMO_OUT,
    count: int = DEMO_SCENES,
    seed: int = 0,
    config: Config | None = None,
) -> DemoResult:
    """Generate scenes, label them, train, evaluate on the test scenes, predict a few, write the report, and
    segment a few seconds of a generated drive with the model.

    Args:
        out: output folder (created; a rerun with the same count reuses the same file names).
        count: number of scenes; 20% become the test set.
        seed: seeds the scenes, the split and training.
        config: settings to use instead of the packaged ``demo`` preset (its data/runs/cache paths are
            pointed under ``out``).

    Returns:
        A :class:`DemoResult` (its ``str()`` is the printed summary).
    """
    from cityseg.synth import write_scenes
    from cityseg.training import train

    out = ensure_writable_dir(out)
    seconds: dict[str, float] = {}

    started = time.monotonic()
    summary = write_scenes(out / "data", count=count, seed=seed, val_fraction=DEMO_TEST_FRACTION)
    print(f"cityseg demo: {summary}".splitlines()[0])
    seconds["scenes"] = time.monotonic() - started

    config = demo_config(out, seed, config)
    started = time.monotonic()
    run_dir = train(config)  # labels (cached), trains, tests the best checkpoint, writes plots and report
    seconds["label+train+evaluate"] = time.monotonic() - started

    started = time.monotonic()
    predictions = _predict_examples(run_dir, out / "predictions")
    seconds["predict"] = time.monotonic() - started

    started = time.monotonic()
    drive, segmented_drive = _segment_drive(run_dir, out, tuple(config.data.size), seed)
    seconds["drive"] = time.monotonic() - started

    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    present = sum(1 for entry in metrics.get("per_class", {}).values() if entry.get("iou") is not None)
    return DemoResult(
        out=out,
        run_dir=run_dir,
        report=run_dir / "report.html",
        miou=metrics.get("mIoU"),
        classes=f"{present} {CLASS_SET_NAMES.get(config.labels.classes, config.labels.classes)}",
        seconds=seconds,
        predictions=predictions,
        drive=drive.video,
        drive_labels=drive.labels,
        segmented_drive=segmented_drive,
    )


def _predict_examples(run_dir: Path, folder: Path) -> list[Path]:
    """Segment a few test photos with the saved model through cityseg.engine, as a user would."""
    import json

    import numpy as np
    from PIL import Image

    from cityseg.engine import Segmenter
    from cityseg.files import atomic_path
    from cityseg.pairs import read_pair

    splits = json.loads((run_dir / "splits.json").read_text())
    root = Path(splits["root"])
    segmenter = Segmenter.from_pretrained(run_dir / "model")
    classes = segmenter.class_set
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for name in splits.get("test", [])[:PREDICTION_COUNT]:
        photo, _ = read_pair(root / name)  # (H, W, 3) uint8
        predicted = segmenter.predict(photo)  # (H, W) class indices at the photo's own size
        picture = np.concatenate([photo, classes.colorize(predicted)], axis=1)  # photo | prediction
        target = folder / f"{Path(name).stem}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
        written.append(target)
    return written


def _segment_drive(run_dir: Path, out: Path, size: tuple[int, int], seed: int) -> tuple[DriveSummary, Path]:
    """Write a few seconds of a generated drive at the model's size and segment it with the saved model.

    Returns:
        (what the drive wrote, the segmented overlay video).
    """
    from cityseg.engine import Segmenter
    from cityseg.synth import write_drive
    from cityseg.video import predict_video

    even = (max(32, size[0] - size[0] % 2), max(32, size[1] - size[1] % 2))  # H.264 wants even sides
    drive = write_drive(out / "drive.mp4", seconds=DRIVE_SECONDS, fps=DRIVE_FPS, size=even, seed=seed)
    print(f"cityseg demo: {drive}".splitlines()[0])
    segmenter = Segmenter.from_pretrained(run_dir / "model")
    summary = predict_video(segmenter, drive.video, out / "drive-segmented")
    print(f"cityseg demo: {summary}".splitlines()[0])
    return drive, summary.overlay
