"""What a finished run leaves in its folder: history.csv, the model, metrics.json, plots/ and report.html.

runs/<timestamp>/
    config.yaml        the one config that made the run (also inside every checkpoint as hparams)
    splits.json        train/val/test image lists
    labeller.json      how masks became class indices (K-Means centres, if any), reused by evaluate
    checkpoints/       best.ckpt and last.ckpt (Lightning ModelCheckpoint)
    csv/, tensorboard/ Lightning's loggers
    history.csv        one clean row per epoch, built from the CSV logger
    model/             models.save_model: weights, smp config, model card, cityseg.json
    metrics.json       test-set metrics of the best checkpoint
    plots/, report.html
runs/latest -> <timestamp>
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text
from cityseg.run_folders import MODEL_DIR, update_latest

LABELLER_FILE = "labeller.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
HISTORY_COLUMNS = (  # history.csv, one row per epoch; plots.plot_history draws the pairs of train_/val_ curves
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "train_acc",
    "val_acc",
    "train_mIoU",
    "val_mIoU",
    "val_mAcc",
    "epoch_seconds",
)


def write_history(run_dir: Path) -> Path:
    """Build ``history.csv`` (one row per epoch, columns :data:`HISTORY_COLUMNS`) from the CSV logger's files.

    Lightning writes one metrics.csv per session under ``csv/version_N`` (a resumed run adds one), with
    train and validation values on separate rows. Rows are merged by epoch, later sessions winning.
    """
    epochs: dict[int, dict[str, str]] = {}
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for metrics_file in versions:
        with open(metrics_file, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("epoch"):
                    continue
                merged = epochs.setdefault(int(float(row["epoch"])), {})
                merged.update({key: value for key, value in row.items() if value not in ("", None)})
    lines = [",".join(HISTORY_COLUMNS)]
    for epoch in sorted(epochs):
        values = epochs[epoch]
        if "train_loss" not in values:
            continue  # an epoch interrupted before it finished
        values["epoch"] = str(epoch)
        lines.append(",".join(values.get(column, "") for column in HISTORY_COLUMNS))
    path = run_dir / HISTORY_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def save_labeller(labeller, run_dir: Path) -> None:
    labeller.save(run_dir / LABELLER_FILE)


def load_run_labeller(run_dir: Path):
    from cityseg.labels import load_labeller

    path = run_dir / LABELLER_FILE
    return load_labeller(path) if path.is_file() else None


def finish_run(
    run_dir: Path,
    config: Config,
    module: L.LightningModule,
    datamodule,
    class_set,
    fit_seconds: float,
    trainer: L.Trainer,
) -> dict[str, Any]:
    """Write what a finished run leaves: model/, metrics.json, history.csv, plots/, report.html, runs/latest.

    Returns:
        The test report written to metrics.json (:func:`cityseg.metrics.metrics_report` plus run facts).
    """
    from cityseg.datasets import normalization
    from cityseg.models import ModelInfo, save_model

    mean, std = normalization(config.model.encoder)
    info = ModelInfo.from_class_set(
        config.model.arch,
        config.model.encoder,
        class_set,
        tuple(config.data.size),
        label_method=config.labels.method,
        encoder_weights=module.encoder_weights_used,
        mean=mean,
        std=std,
    )
    checkpoint = trainer.checkpoint_callback
    report = dict(module.test_report or {})
    report.update(
        {
            "split": "test",
            "images": len(datamodule.splits.get("test", [])),
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "monitor": config.train.monitor,
            "best_score": _float(checkpoint.best_model_score) if checkpoint else None,
            "best_checkpoint": Path(checkpoint.best_model_path).name
            if checkpoint and checkpoint.best_model_path
            else None,
            "fit_seconds": round(fit_seconds, 1),
            "encoder_weights": module.encoder_weights_used,
        }
    )
    scores = {key: value for key, value in report.items() if key != "confmat"}  # the model's metrics.json: no matrix
    save_model(
        module.net,
        run_dir / MODEL_DIR,
        info,
        metrics=scores,
        card=run_card(run_dir, info, config, scores, _parameters(module.net)),
    )
    atomic_write_text(run_dir / METRICS_FILE, json.dumps(report, indent=1) + "\n")
    history = write_history(run_dir)
    write_pictures(run_dir, module, datamodule, class_set, report, history)
    update_latest(run_dir)
    return report


def run_card(run_dir: Path, info, config: Config, report: dict, parameters: int = 0) -> str:
    """The model card of a run's model: its recipe, its held-out figures, the cities or images held out."""
    from cityseg.model_card import render_card, run_facts

    facts = run_facts(run_dir, info, config, report, name=str(run_dir / MODEL_DIR))
    return render_card(dataclasses.replace(facts, parameters=parameters), report)


def _parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value.item() if isinstance(value, torch.Tensor) else value)
    return None if math.isnan(value) else value


def write_pictures(
    run_dir: Path, module: L.LightningModule, datamodule, class_set, report: dict, history: Path | None
) -> None:
    """The run's figures in plots/ and its report.html (plots.py and report.py draw them)."""
    from cityseg import plots
    from cityseg.report import write_report

    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    if history is not None:
        with contextlib.suppress(CitysegError):  # no finished epoch to draw (a run stopped in its first epoch)
            plots.plot_history(history, plot_dir)
    if report.get("confmat") is not None:
        plots.plot_confusion(report["confmat"], list(class_set.names), plot_dir / "confusion.png")
    if report.get("per_class"):
        plots.plot_class_iou(report, plot_dir / "class_iou.png")
    photos, truths, preds = predict_examples(module, datamodule, count=4)
    if photos:
        plots.plot_predictions(photos, truths, preds, class_set, plot_dir / "predictions.png")
    rows = label_examples(datamodule, count=3)
    if rows:
        plots.plot_label_figure(rows, class_set, plot_dir / "labels.png")
    write_report(run_dir)


def label_examples(datamodule, count: int = 3) -> list[tuple]:
    """(photo, colour mask, labels) of the first ``count`` training images, for the labelling figure."""
    from cityseg.labels import label_figure_rows

    paths = (datamodule.splits.get("train") or [])[:count]
    return label_figure_rows(paths, datamodule.label_cache, datamodule.config.data.mask_side)


@torch.no_grad()
def predict_examples(module: L.LightningModule, datamodule, count: int = 6):
    """Photos, true labels and predicted labels of the first ``count`` test images, as uint8 arrays."""
    from cityseg.datasets import PairDataset, normalization
    from cityseg.transforms import eval_transform

    paths = (datamodule.splits.get("test") or datamodule.splits.get("val") or [])[:count]
    raw = PairDataset(paths, datamodule.label_cache, None, datamodule.config.data.mask_side)
    transform = eval_transform(module.config.data.size, *normalization(module.config.model.encoder))
    module.eval()
    photos, truths, preds = [], [], []
    for index in range(len(raw)):
        photo, truth = raw[index]
        image, _ = transform(photo, truth)
        logits = module(image[None].to(module.device))  # (1, C, h, w)
        logits = F.interpolate(logits, size=truth.shape, mode="bilinear", align_corners=False)
        photos.append(photo)
        truths.append(truth)
        preds.append(logits.argmax(1)[0].byte().cpu().numpy())
    return photos, truths, preds
