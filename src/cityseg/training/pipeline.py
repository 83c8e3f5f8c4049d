"""``train(config)``: split, label, fit, test the best checkpoint, and write the run folder.

Only the global-rank-0 process writes run files, and the other processes wait for it before returning,
so the same code runs under DDP (``--strategy ddp --devices N``): the run folder is named once and
passed on in ``CITYSEG_RUN_DIR``, the budget plan is rank 0's, and test images are each scored once.

Example:
    >>> from cityseg.config import Config
    >>> config = Config.from_yaml("default")
    >>> config.data.root = "data/cityscapes_pairs"
    >>> run_dir = train(config)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from cityseg.config import Config
from cityseg.devices import configure_threads
from cityseg.errors import CitysegError
from cityseg.run_folders import CONFIG_FILE, new_run_dir, resolve_run
from cityseg.training.checkpoints import LAST_CHECKPOINT, check_checkpoint, remove_unfinished_saves
from cityseg.training.module import SegModule
from cityseg.training.outputs import finish_run, load_run_labeller, save_labeller
from cityseg.training.trainer import budget_planner, make_trainer

RUN_DIR_ENV = "CITYSEG_RUN_DIR"  # the run folder, passed to the other processes of a multi-process run
SPLITS_FILE = "splits.json"


def class_weights(pixel_counts: Sequence[int]) -> list[float]:
    """ENet-style weights ``1 / ln(1.02 + share)`` from the classes' pixel counts in the train split.

    Rare classes weigh up to ~50x a dominant one; weights are scaled to average 1 over the classes present
    (absent classes get 1: they never occur as a target).

    Example:
        >>> [round(w, 2) for w in class_weights([900, 100, 0])]
        [0.3, 1.7, 1.0]
    """
    import numpy as np

    counts = np.asarray(pixel_counts, dtype=np.int64)
    present = counts > 0
    weights = 1.0 / np.log(1.02 + counts / max(1, counts.sum()))
    weights = np.where(present, weights / weights[present].mean() if present.any() else 1.0, 1.0)
    return [float(w) for w in weights]


def train(
    config: Config | None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    resume_from: str = LAST_CHECKPOINT,
) -> Path:
    """Train a model as ``config`` says, test its best checkpoint, and write the run folder.

    Args:
        config: the run's settings; ``data.root`` must name the dataset. When resuming, pass the run's own
            config (``Config.from_yaml(RUN/config.yaml)``, with any overrides such as more epochs) or
            ``None`` to use it unchanged.
        resume: a run folder (or ``runs/latest``) to continue from its ``checkpoints/last.ckpt``.
        callbacks: extra Lightning callbacks (tests use one to interrupt a run).
        resume_from: ``last`` (where training stopped) or ``best`` (the best validation score): the
            checkpoint to resume from, read whole first (:func:`~cityseg.training.checkpoints.check_checkpoint`).

    Returns:
        The run folder (``train.runs_dir/<timestamp>``, or the resumed one).

    Raises:
        CitysegError: bad dataset, settings, or a resumed run without a checkpoint.
    """
    checkpoint = None
    if resume is not None:
        run_dir = resolve_run(resume)
        checkpoint = check_checkpoint(run_dir, resume_from)
        remove_unfinished_saves(run_dir)
        config = Config.from_yaml(run_dir / CONFIG_FILE) if config is None else config
    elif config is None:
        raise CitysegError("train needs a config (or a run to resume)")

    # the same seed in every process gives identical initial weights; workers=True derives a distinct
    # augmentation stream for each DataLoader worker of each process from it
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    configure_threads(config)
    if config.model.init and resume is None:  # a model of another architecture stops the run before its folder exists
        from cityseg.training.start import adopt_init_architecture

        adopt_init_architecture(config)

    # one run folder shared by every process of a multi-process run: rank 0 names it, the others inherit it
    inherited = os.environ.get(RUN_DIR_ENV)
    if resume is None:
        run_dir = Path(inherited) if inherited else _on_rank_zero_new_run_dir(config.train.runs_dir)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        return _train_in(run_dir, config, checkpoint if resume is not None else None, callbacks)
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


def _train_in(run_dir: Path, config: Config, checkpoint: Path | None, callbacks: Sequence[Callback]) -> Path:
    from cityseg.datasets import prepare_labels
    from cityseg.labelled_folders import adopt_dataset_classes
    from cityseg.splits import load_splits, save_splits, split_dataset
    from cityseg.training.data import SegDataModule

    resuming = checkpoint is not None
    splits_file = run_dir / SPLITS_FILE
    if resuming and splits_file.is_file():
        splits, note = load_splits(splits_file, config.data.root or None), _saved_note(splits_file)
    else:
        splits, note = split_dataset(config)
    _say(f"cityseg: {note}")
    _say(f"cityseg: {', '.join(f'{len(v)} {k}' for k, v in splits.items())} images; run folder {run_dir}")

    recognised = adopt_dataset_classes(config)
    if recognised:
        _say(f"cityseg: {recognised}")
    labeller = load_run_labeller(run_dir) if resuming else None
    splits, label_cache, reports = prepare_labels(config, splits, labeller=labeller, progress=config.train.progress)
    class_set = label_cache.labeller.class_set
    if config.model.init and not resuming:
        from cityseg.training.start import prepare_init

        _say(prepare_init(config, tuple(class_set.names)))
    if rank_zero_only.rank == 0:
        config.to_yaml(run_dir / CONFIG_FILE)
        save_splits(splits, splits_file, config.data.root, note)
        save_labeller(label_cache.labeller, run_dir)

    budget = budget_planner(config)  # a callback whose plan the data module reads: one object for both
    datamodule = SegDataModule(config, splits, label_cache, step_plan=budget)
    weights = class_weights(reports["train"].pixel_counts) if config.optim.class_weights else None
    module = SegModule(config, class_set.names, pretrained=not resuming, class_weights=weights)
    parameters = sum(p.numel() for p in module.net.parameters())
    _say(
        f"cityseg: {config.model.arch}/{config.model.encoder}, {parameters / 1e6:.1f} M parameters, "
        f"{class_set.num_classes} {class_set.name} classes, encoder weights {module.encoder_weights_used}"
    )
    trainer = make_trainer(config, run_dir, budget)
    trainer.callbacks.extend(callbacks)
    started = time.monotonic()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None)
    fit_seconds = time.monotonic() - started
    run_dir = Path(trainer.strategy.broadcast(str(run_dir)))  # rank 0's folder, in every process

    # test the best checkpoint (the last weights if no validation ever ran)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    if trainer.is_global_zero:
        finish_run(run_dir, config, module, datamodule, class_set, fit_seconds, trainer)
    trainer.strategy.barrier()  # the other processes return only once the run folder is complete
    return run_dir


def _saved_note(splits_file: Path) -> str:
    """What a resumed run's splits.json says was held out: kept, not replaced by a note about resuming."""
    try:
        return str(json.loads(splits_file.read_text()).get("note") or "the resumed run's splits (splits.json)")
    except (OSError, ValueError, AttributeError):
        return "the resumed run's splits (splits.json)"


@rank_zero_only
def _say(message: str) -> None:
    print(message, flush=True)


def _on_rank_zero_new_run_dir(runs_dir: str) -> Path:
    if rank_zero_only.rank == 0:
        return new_run_dir(runs_dir)
    # started by an outside launcher (torchrun, srun) rather than by rank 0: this process learns the folder
    # from rank 0 once the Trainer has joined the processes (ModelCheckpoint broadcasts its folder, _train_in
    # the run folder); until then it writes nothing, and never into this placeholder
    return Path(runs_dir) / f".pending-rank{rank_zero_only.rank}"
