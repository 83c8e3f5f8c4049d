"""Scoring a trained model: a network over a loader (:func:`evaluate_model`), or a whole run (:func:`evaluate_run`).

The scores are :mod:`cityseg.metrics`' (one confusion matrix over the whole set, filled by
:func:`cityseg.metrics.update_confusion`, as training's validation fills its own). :func:`evaluate_run` is
what ``cityseg evaluate`` runs: it finds the model (:func:`cityseg.model_sources.locate_model`), rebuilds the run's
splits and labels, and evaluates as the run validated (sliding windows, flip: :func:`cityseg.inference.eval_net`);
what the caller chooses is one :class:`EvaluateOptions`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.devices import configure_threads, pick_device
from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text, natural_key
from cityseg.metrics import SegmentationMetrics, metrics_report, update_confusion
from cityseg.model_sources import locate_model
from cityseg.run_folders import CONFIG_FILE

if TYPE_CHECKING:
    from cityseg.models import ModelInfo

EVALUATIONS_DIR = "evaluations"  # RUN/evaluations/<name>/: one folder per evaluation (evaluation_name)
SPLITS_FILE = "splits.json"  # the run's train/val/test lists (cityseg.splits.save_splits)


@dataclass(frozen=True)
class EvaluateOptions:
    """What a caller chooses for an evaluation (``cityseg evaluate``'s flags); None keeps the run's setting.

    Args:
        split: ``test`` (default), ``val``, ``train``, or ``all`` (every labelled image of the data).
        baseline: also score the untrained network: same architecture and encoder weights, same init seed.
        batch_size, workers, accelerator: the run's ``data.batch_size``, ``data.workers`` and
            ``train.accelerator``, overridden.
        progress: show progress bars.
        flip: also segment each mirror image and average the logits (default: the run's ``data.eval_flip``).
        scales: also segment each image rescaled by these factors and average the logits at its size
            (multi-scale test-time augmentation, e.g. :data:`cityseg.inference.TTA_SCALES`; default: the
            run's ``data.eval_scales``).
        label_format: what the data's labels are (``data.label_format``; default: the run's for its own data,
            ``auto`` for other data).
        skip_bad: leave out unreadable images and unmatched photos and labels, listed (default: the run's).
    """

    split: str = "test"
    baseline: bool = False
    batch_size: int | None = None
    workers: int | None = None
    accelerator: str | None = None
    progress: bool = True
    flip: bool | None = None
    scales: tuple[float, ...] | None = None
    label_format: str | None = None
    skip_bad: bool | None = None


@dataclass(frozen=True)
class _Evaluation:
    """What the steps of one :func:`evaluate_run` share."""

    config: Config  # the run's, with the evaluation's overrides
    info: ModelInfo
    run_dir: Path | None  # None: a bare model folder
    own: bool  # the data is the run's own, so its splits.json applies
    options: EvaluateOptions


def evaluate_model(
    net: torch.nn.Module,
    dataloader: Iterable,
    num_classes: int,
    device: str | torch.device = "cpu",
    names: Sequence[str] | None = None,
    progress: bool = False,
    *,
    ignore_index: int = IGNORE_INDEX,
    annotated_only: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """Run a network over a loader of (image, mask) batches and score its predictions.

    Logits smaller or larger than the mask are resized (bilinear) to the mask's size before the argmax,
    so a model run at its training size is scored at the labels' resolution.

    Args:
        net: maps (B, 3, H, W) float images to (B, C, h, w) logits.
        dataloader: yields ``(images, masks, ...)`` tuples or dicts with ``image`` and ``mask`` keys;
            masks (B, H, W) integer class indices.
        num_classes: C.
        device: where to run the network.
        names: class names for the report.
        progress: show a tqdm progress bar.
        ignore_index: mask value left out of the scores.
        annotated_only: score only the classes the data has pixels of (see :func:`metrics_report`).

    Returns:
        (:func:`metrics_report` dict, (C, C) int64 confusion matrix).
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    metric = SegmentationMetrics(num_classes=num_classes, ignore_index=ignore_index).to(device)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            # disable=None: a bar on a terminal only, so a log file gets no stream of redrawn lines
            for batch in tqdm(dataloader, desc="evaluate", unit="batch", disable=None if progress else True):
                images, masks = _images_and_masks(batch)
                logits = net(images.to(device))  # (B, C, h, w)
                # masks: (B, H, W), or a list of (H, W) when the labels differ in size (datasets.collate_pairs)
                update_confusion(metric, logits, masks)
    finally:
        net.train(was_training)
    confmat = metric.compute()["confmat"].cpu().numpy()
    return metrics_report(confmat, names, annotated_only=annotated_only), confmat


def _images_and_masks(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, dict):
        image = batch.get("image")
        mask = next((batch[k] for k in ("mask", "target", "label", "labels") if k in batch), None)
        if image is None or mask is None:
            raise ValueError(f"batch dict needs 'image' and 'mask' keys, got {sorted(batch)}")
        return image, mask
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"expected (images, masks) batches, got {type(batch).__name__}")


def evaluate_run(
    target: str | os.PathLike,
    data: str | os.PathLike | None = None,
    options: EvaluateOptions | None = None,
    out: str | os.PathLike | None = None,
    images: Sequence[str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Score a trained model on one split: what ``cityseg evaluate`` runs.

    The split is the run's own (splits.json) when the data is the run's. Other data (any dataset cityseg
    reads: pairs, the release, KITTI, BDD100K ...) is split as ``data.split=official`` does with the run's
    seed: its own val folder is the test set, else a seeded ``data.test_fraction`` of it; its labels are read
    in its own format (``options.label_format`` to say otherwise), and classes it does not annotate are reported as
    absent, not as 0. Labels come from the labeller the run saved (labeller.json), so the classes match.

    Args:
        target: a run folder (``runs/latest``) or a model folder (``runs/<run>/model``).
        data: dataset folder (default: the run's ``data.root``).
        options: the split, a baseline, overrides of the run's settings, flip and scales ... (default:
            ``EvaluateOptions()``: the test split as the run validated).
        out: folder for metrics.json and plots/ (default: ``RUN/evaluations/<split, data, options>/``, see
            :func:`evaluation_name`, so the run's own test scores are never overwritten; ``out=RUN`` merges
            the new scores into the run's metrics.json and report on purpose).
        images: score exactly these photos of ``data`` (e.g. another run's test list), instead of a split.

    Returns:
        The :func:`~cityseg.evaluation.metrics_report` plus ``split``, ``images``, ``data``, ``model``,
        ``baseline`` (a report, with ``options.baseline``) and ``written`` (the metrics.json path).
    """
    from cityseg.models import load_model

    options = options or EvaluateOptions()
    source = locate_model(target)
    model_dir, run_dir = source.folder, source.run
    net, info = load_model(model_dir)
    own = _own_data(run_dir, data)
    overrides = {"data.root": data, "data.batch_size": options.batch_size, "data.workers": options.workers}
    overrides.update(
        {
            "train.accelerator": options.accelerator,
            "data.skip_bad": options.skip_bad,
            "data.label_format": options.label_format,
        }
    )
    if not own:  # another dataset: its own format and its own val folder (or a seeded share) as the test set
        overrides = {"data.split": "official", **overrides, "data.label_format": options.label_format or "auto"}
    config = _evaluation_config(run_dir, model_dir, info, overrides, options)
    configure_threads(config)
    evaluation = _Evaluation(config, info, run_dir, own, options)
    paths, cache = _scored_images(evaluation, images)
    report, confmat = _score(net, evaluation, paths, cache)
    d = config.data
    report.update(
        {
            "split": options.split if images is None else "given",
            "images": len(paths),
            "data": str(d.root),
            "model": str(model_dir.resolve()),
            "flip": bool(d.eval_flip),  # how it was scored: with the mirror image or without
            "scales": list(d.eval_scales),  # and at which scales
        }
    )
    split = options.split
    # a built-in or Hub model is read-only: its evaluations go to ./evaluations/<its name>/ instead
    home = (
        Path(EVALUATIONS_DIR) / source.name.replace("/", "--")
        if source.read_only
        else (run_dir or model_dir) / EVALUATIONS_DIR
    )
    out_dir = Path(out) if out else home / evaluation_name(config, split, data)
    report["written"] = str(_write_scores(report, confmat, evaluation, out_dir))
    return report


def _score(net, evaluation: _Evaluation, paths: list[Path], cache) -> tuple[dict[str, Any], np.ndarray]:
    """(report, confusion matrix) of ``net`` on ``paths``, as the run validated and tested (``data.eval_*``)."""
    from torch.utils.data import DataLoader

    from cityseg.datasets import PairDataset, collate_pairs
    from cityseg.inference import eval_net
    from cityseg.transforms import eval_transform

    config, info, options = evaluation.config, evaluation.info, evaluation.options
    d = config.data
    dataset = PairDataset(paths, cache, eval_transform(info.input_size, info.mean, info.std), d.mask_side)
    loader = DataLoader(dataset, batch_size=d.batch_size, num_workers=d.workers, collate_fn=collate_pairs)
    device = pick_device(config.train.accelerator)
    # sliding windows, the mirror image, the scales
    net = eval_net(
        net, d.eval_window, d.eval_overlap, flip=d.eval_flip, num_classes=info.num_classes, scales=tuple(d.eval_scales)
    )
    score = {"names": info.names, "progress": options.progress, "annotated_only": not evaluation.own}
    report, confmat = evaluate_model(net.to(device), loader, info.num_classes, device, **score)
    if options.baseline:
        untrained = _untrained_net(config, info.num_classes).to(device)
        report["baseline"] = evaluate_model(untrained, loader, info.num_classes, device, **score)[0]
    return report, confmat


def _scored_images(evaluation: _Evaluation, images: Sequence[str | os.PathLike] | None):
    """(the photos to score, the label cache they are read through): a split, every image, or those given."""
    from cityseg.datasets import prepare_labels

    config, run_dir, split = evaluation.config, evaluation.run_dir, evaluation.options.split
    splits = _run_splits(config, run_dir, evaluation.own)
    if images is not None:
        chosen = [Path(p) for p in images]
    elif split == "all":
        chosen = sorted({p for paths in splits.values() for p in paths}, key=lambda p: (str(p.parent), natural_key(p)))
    else:
        chosen = splits.get(split, [])
    if not chosen:
        raise CitysegError(f"the {split} split of {config.data.root} is empty; choose another split or dataset")
    labeller = _run_labeller(config, run_dir, splits, evaluation.info)
    labelled, cache, _ = prepare_labels(config, {"test": chosen}, labeller, progress=evaluation.options.progress)
    return labelled["test"], cache


def evaluation_name(config: Config, split: str, data: str | os.PathLike | None = None) -> str:
    """The folder name of an evaluation under ``RUN/evaluations/``: the split, other data, and the options.

    Example:
        >>> config = Config()
        >>> config.data.eval_flip, config.data.eval_scales = True, (0.75, 1.0, 1.25)
        >>> evaluation_name(config, "test", data="/data/kitti")
        'test-kitti-flip-scales0.75,1,1.25'
    """
    parts = [split]
    if data is not None:
        parts.append(Path(data).name or "data")
    d = config.data
    if min(d.eval_window) > 0:
        parts.append(f"window{d.eval_window[0]}x{d.eval_window[1]}")
    if d.eval_flip:
        parts.append("flip")
    if tuple(d.eval_scales) != (1.0,):
        parts.append("scales" + ",".join(f"{scale:g}" for scale in d.eval_scales))
    return "-".join(parts)


def _evaluation_config(
    run_dir: Path | None, model_dir: Path, info: ModelInfo, overrides: dict, options: EvaluateOptions
) -> Config:
    """The run's config (a bare model folder: what its ModelInfo says) with the evaluation's overrides."""
    config = Config.from_yaml(run_dir / CONFIG_FILE) if run_dir else Config()
    if run_dir is None:
        from cityseg.user_classes import TABLE_FILE

        config.model.arch, config.model.encoder = info.arch, info.encoder
        config.data.size = tuple(info.input_size)
        classes = str(model_dir / TABLE_FILE) if info.class_table else info.class_set_name
        config.labels.method, config.labels.classes = info.label_method, classes
    for key, value in overrides.items():
        if value is not None:
            config.set(key, value)
    if options.flip is not None:
        config.data.eval_flip = options.flip
    if options.scales is not None:
        config.data.eval_scales = tuple(float(s) for s in options.scales)
    return config


def _own_data(run_dir: Path | None, data) -> bool:
    """Whether ``data`` is the data the run was trained on (None: the run's), so its splits.json applies."""
    saved = run_dir / SPLITS_FILE if run_dir else None
    if saved is None or not saved.is_file():
        return data is None
    return data is None or Path(data).resolve() == Path(json.loads(saved.read_text()).get("root", "")).resolve()


def _run_splits(config: Config, run_dir: Path | None, own: bool) -> dict[str, list[Path]]:
    """The run's own splits (splits.json) when the data is the run's; else made from the config."""
    from cityseg.splits import load_splits, split_dataset

    saved = run_dir / SPLITS_FILE if run_dir else None
    if own and saved is not None and saved.is_file():
        return load_splits(saved, config.data.root or None)
    return split_dataset(config)[0]


def _run_labeller(config: Config, run_dir: Path | None, splits: dict, info):
    """The labeller the run saved (so K-Means classes match the model's), else one made from the config."""
    from cityseg.labels import load_labeller, make_labeller

    labeller_file = run_dir / "labeller.json" if run_dir else None
    if labeller_file is not None and labeller_file.is_file():
        labeller = load_labeller(labeller_file)
    else:
        from cityseg.labelled_folders import label_source

        exact = label_source(config.data.root, config.data.label_format) is not None
        data = config.data
        labeller = make_labeller(config.labels, splits["train"], data.mask_side, data.cache_dir or None, exact=exact)
    if tuple(labeller.class_set.names) != tuple(info.names):
        raise CitysegError(
            f"the model predicts {info.num_classes} {info.class_set_name} classes but the labels are "
            f"{labeller.class_set.num_classes} {labeller.class_set.name} classes; evaluate with the run folder"
        )
    return labeller


def _write_scores(report: dict, confmat, evaluation: _Evaluation, out_dir: Path) -> Path:
    """metrics.json (merged into the one there), the confusion and per-class IoU plots, the run's report."""
    from cityseg import plots

    names, run_dir = evaluation.info.names, evaluation.run_dir

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CitysegError(f"cannot create {out_dir}: {exc.strerror or exc}; pick another --out") from None
    metrics_file = out_dir / "metrics.json"
    in_run = run_dir is not None and out_dir.resolve() == run_dir.resolve()
    # --out RUN on purpose: the new scores go beside the run's facts (epochs, fit time) in its metrics.json
    previous = json.loads(metrics_file.read_text()) if in_run and metrics_file.is_file() else {}
    merged = {**previous, **report}
    if not evaluation.options.baseline:
        merged.pop("baseline", None)
    atomic_write_text(metrics_file, json.dumps(merged, indent=1) + "\n")
    plot_dir = out_dir / "plots"
    plots.plot_confusion(confmat, list(names), plot_dir / "confusion.png")
    plots.plot_class_iou(report, plot_dir / "class_iou.png")
    if in_run:
        from cityseg.report import write_report

        write_report(run_dir)
    return metrics_file


def _untrained_net(config: Config, num_classes: int) -> torch.nn.Module:
    """The network ``train`` starts from: same architecture and encoder weights, built under the same seed."""
    from lightning.fabric.utilities.seed import seed_everything

    from cityseg.models import create_model, network_options

    seed_everything(config.train.seed, verbose=False)
    model = config.model
    net = create_model(model.arch, model.encoder, num_classes, model.encoder_weights, **network_options(model))
    return net.to(memory_format=torch.channels_last) if config.train.channels_last else net
