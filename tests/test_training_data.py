"""Training by steps: a step limit (train.max_steps), resuming under one, and the last epochs on whole photos."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from cityseg.config import Config
from cityseg.splits import split_dataset
from cityseg.training import train
from cityseg.training.data import SegDataModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec.*")


@pytest.fixture
def datamodule_for(scenes, tmp_path, tiny_config_for):
    """``datamodule_for(**settings)``: the scenes' data module, set up for fitting on 32x32 crops."""

    def build(**settings) -> SegDataModule:
        config = tiny_config_for(scenes, tmp_path, augment__enabled=True, augment__crop=(32, 32), **settings)
        datamodule = SegDataModule(config, split_dataset(config)[0])
        datamodule.setup("fit")
        return datamodule

    return build


def _first_batch_shape(datamodule, global_step: int, max_steps: int = -1, planned_steps=None) -> tuple[int, ...]:
    datamodule.step_plan = SimpleNamespace(planned_steps=planned_steps)
    datamodule.trainer = SimpleNamespace(global_step=global_step, max_steps=max_steps, world_size=1, global_rank=0)
    images, masks = next(iter(datamodule.train_dataloader()))
    assert images.shape[-2:] == masks.shape[-2:]
    return tuple(images.shape[-2:])


def test_final_epochs_train_on_whole_photos(datamodule_for):
    # 9 training scenes in batches of 3: 3 steps an epoch; 2 epochs (6 steps) planned
    datamodule = datamodule_for(augment__final_epochs=1)
    assert _first_batch_shape(datamodule, global_step=0) == (32, 32)  # crops while more than an epoch is left
    assert _first_batch_shape(datamodule, global_step=3) == (64, 64)  # the last epoch: whole photos at data.size
    # a step limit or a time budget shortens the plan, and the switch comes earlier
    assert _first_batch_shape(datamodule, global_step=0, max_steps=3) == (64, 64)
    assert _first_batch_shape(datamodule, global_step=0, planned_steps=5) == (32, 32)  # 1.67 epochs left
    assert _first_batch_shape(datamodule, global_step=1, planned_steps=5) == (64, 64)
    # a plan that ends off an epoch boundary switches at the nearest boundary: 1.33 epochs left is "the last"
    assert _first_batch_shape(datamodule, global_step=0, planned_steps=4) == (64, 64)


def test_without_final_epochs_every_epoch_trains_on_crops(datamodule_for):
    datamodule = datamodule_for()
    assert _first_batch_shape(datamodule, global_step=5) == (32, 32)


def test_max_steps_ends_the_run_and_spans_the_schedule(scenes, tmp_path, history_reader, tiny_config_for):
    config = tiny_config_for(scenes, tmp_path, train__max_epochs=50, train__max_steps=4, optim__schedule="poly")
    run = train(config)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    assert len(history_reader(run)) == 2  # 3 steps an epoch: the run ends one step into the second epoch
    # the poly schedule spans the 4 steps: it reached 0 at the last one
    assert checkpoint["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(0.0, abs=1e-9)


class Crash(Exception):
    pass


class CrashAtStep(Callback):
    """Kill the run as a step starts, as a power cut would, mid-epoch."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash(f"simulated crash at step {self.step}")


def test_run_killed_mid_epoch_resumes_to_its_step_limit(scenes, tmp_path, history_reader, tiny_config_for):
    config = tiny_config_for(scenes, tmp_path, train__max_epochs=1000, train__max_steps=8, train__patience=1000)
    with pytest.raises(Crash):
        train(config, callbacks=[CrashAtStep(4)])  # one step into the second epoch: last.ckpt holds the first
    run = next(p for p in tmp_path.iterdir() if (p / "checkpoints" / "last.ckpt").is_file())
    assert train(Config.from_yaml(run / "config.yaml"), resume=run) == run
    assert [row["epoch"] for row in history_reader(run)] == ["0", "1", "2"]  # 3 + 3 + 2 steps
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 8


def test_rare_class_sampling_feeds_the_training_loader(datamodule_for):
    datamodule = datamodule_for(data__rare_class_temperature=0.01)
    datamodule.trainer = SimpleNamespace(global_step=0, max_steps=-1, world_size=1, global_rank=0, callbacks=[])
    loader = datamodule.train_dataloader()
    assert loader.sampler is datamodule.train_dataloader().sampler  # one stream of draws for the whole run
    assert len(loader.sampler) == len(datamodule.datasets["train"])
    assert sum(1 for _ in loader) == len(datamodule.datasets["train"]) // 3  # whole batches of 3
