"""What training prints: a bar on a terminal, one line per epoch in a log, no library noise."""

from __future__ import annotations

import io
import logging
import warnings
from types import SimpleNamespace

import torch

from cityseg.training import console


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_log(monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar

    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: True, raising=False)
    assert isinstance(console.progress_callback(True), TQDMProgressBar)
    monkeypatch.setattr(console.sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(console.progress_callback(True), console.EpochLines)
    assert console.progress_callback(False) is None


def test_epoch_lines_print_one_line_per_validated_epoch():
    stream = io.StringIO()
    lines = console.EpochLines(stream)
    trainer = SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        current_epoch=3,
        global_step=1116,
        callback_metrics={"train_loss": torch.tensor(0.9123), "val_mIoU": torch.tensor(0.4211), "val_acc": 0.889},
    )
    lines.on_train_epoch_start(trainer, None)
    lines.on_validation_end(trainer, None)
    trainer.sanity_checking = True  # the sanity check before training prints nothing
    lines.on_validation_end(trainer, None)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("epoch 3 · step 1116 · loss 0.912 · val mIoU 0.421 · val aAcc 0.889 · ")
    assert line.endswith(" s")


def test_quiet_libraries_silences_lightning_info_and_third_party_deprecations():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_libraries()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("the learning rate looks too high", UserWarning, stacklevel=1)  # a warning about the run stays
    assert [str(w.message) for w in caught] == ["the learning rate looks too high"]
    assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
    assert logging.getLogger("lightning.pytorch").isEnabledFor(logging.WARNING)


def test_a_logged_training_run_prints_no_tips_and_no_redrawn_bars(tiny_pairs, tmp_path, capfd):
    from cityseg.config import Config
    from cityseg.training import train

    config = Config()
    config.override(
        [
            f"data.root={tiny_pairs}",
            "data.size=64,64",
            "data.batch_size=2",
            "data.workers=0",
            f"data.cache_dir={tmp_path / 'cache'}",
            "model.encoder=resnet18",
            "model.encoder_depth=3",
            "model.decoder_width=16",
            "train.max_epochs=2",
            f"train.runs_dir={tmp_path / 'runs'}",
            "train.accelerator=cpu",
        ]
    )
    train(config)
    out, err = capfd.readouterr()
    text = out + err
    for noise in ("Tip:", "litlogger", "GPU available", "TPU available", "LeafSpec", "Total params", "\r"):
        assert noise not in text, noise
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "val mIoU" in epoch_lines[0]
