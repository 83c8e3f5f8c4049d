"""The typed config: YAML round trip, --set type checks, unknown keys, the presets and the train flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityseg.cli import apply_train_flags, build_parser
from cityseg.config import PRESETS, Config, preset_path
from cityseg.errors import CitysegError

REPO = Path(__file__).resolve().parents[1]


def test_yaml_round_trip_keeps_every_value(tmp_path):
    config = Config()
    config.override(["data.size=96,128", "optim.lr=0.005", "augment.enabled=false", "train.max_epochs=7"])
    config.data.root = "some/data"
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    loaded = Config.from_yaml(path)
    assert loaded == config
    assert loaded.data.size == (96, 128) and isinstance(loaded.data.size, tuple)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("assignment", "key", "expected"),
    [
        ("train.max_epochs=12", ("train", "max_epochs"), 12),
        ("optim.lr=3e-4", ("optim", "lr"), 3e-4),
        ("augment.hflip=no", ("augment", "hflip"), False),
        ("augment.scale=(0.75, 1.25)", ("augment", "scale"), (0.75, 1.25)),
        ("model.encoder=mobilenet_v2", ("model", "encoder"), "mobilenet_v2"),
    ],
)
def test_set_converts_command_line_text_to_the_declared_type(assignment, key, expected):
    config = Config().override([assignment])
    value = getattr(getattr(config, key[0]), key[1])
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.max_epochs=abc", "train.max_epochs"),
        ("train.max_epochs=1.5", "integer"),
        ("augment.enabled=maybe", "true or false"),
        ("data.size=128,128,3", "expected 2 values"),
        ("optim.optimizer=rmsprop", "adam, adamw, sgd"),
        ("data.split=random", "official, blocks, seed"),
        ("train.max_epoch=3", "valid in train"),
        ("trainer.max_epochs=3", "unknown setting"),
        ("train.max_epochs", "key=value"),
    ],
)
def test_bad_settings_fail_with_a_one_line_message(assignment, message):
    with pytest.raises(CitysegError, match=message) as error:
        Config().override([assignment])
    assert "\n" not in str(error.value)


def test_unknown_keys_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  max_epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(CitysegError, match=r"bad\.yaml.*train\.learning_rate"):
        Config.from_yaml(path)
    path.write_text("optimiser:\n  lr: 0.1\n")
    with pytest.raises(CitysegError, match="unknown config section 'optimiser'"):
        Config.from_yaml(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(CitysegError, match="mapping"):
        Config.from_yaml(path)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_by_name_and_match_the_repository_copies(name):
    assert Config.from_yaml(name) == Config.from_yaml(preset_path(name))
    # configs/ in the repository is what users read; the packaged copy is what an installed cityseg loads
    assert (REPO / "configs" / f"{name}.yaml").read_text() == preset_path(name).read_text()


def test_default_preset_is_the_built_in_defaults():
    assert Config.from_yaml("default") == Config()


def test_seed_preset_is_the_original_project():
    config = Config.from_yaml("seed")
    assert (config.model.arch, config.model.encoder) == ("unet", "resnet34")
    assert (config.optim.optimizer, config.optim.lr, config.optim.schedule) == ("adam", 0.01, "none")
    assert config.optim.loss == "ce"  # sparse categorical cross-entropy
    assert config.data.batch_size == 16
    assert config.train.max_epochs == 22
    assert (config.train.monitor, config.train.monitor_mode, config.train.patience) == ("val_acc", "max", 5)
    assert (config.labels.method, config.labels.k) == ("kmeans", 10)
    assert config.data.split == "seed" and config.data.seed_fractions == (0.64, 0.16, 0.2)
    assert config.augment.enabled is False


def test_train_flags_override_the_file_and_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batch_size: 4\ntrain:\n  max_epochs: 9\n")
    file_and_set = ["--config", str(path), "--set", "optim.lr=0.1"]
    flags = ["--lr", "0.02", "--size", "128", "--encoder", "resnet18", "--epochs", "3", "--split", "seed"]
    flags += ["--budget-minutes", "2.5", "--devices", "2"]
    args = build_parser().parse_args(["train", "DATA", *file_and_set, *flags])
    from cityseg.cli import load_config

    config = apply_train_flags(load_config(args), args)
    assert config.data.batch_size == 4  # from the file, no flag given
    assert config.optim.lr == 0.02  # the flag beats --set
    assert config.train.max_epochs == 3  # the flag beats the file
    assert config.data.size == (128, 128)
    assert config.model.encoder == "resnet18"
    assert config.data.split == "seed"
    assert config.train.budget_minutes == 2.5
    assert config.train.devices == "2"
    args = build_parser().parse_args(["train", "DATA", "--size", "96x160", "--epochs", "three"])
    with pytest.raises(CitysegError, match=r"train\.max_epochs"):
        apply_train_flags(Config(), args)
    args = build_parser().parse_args(["train", "DATA", "--size", "96x160"])
    assert apply_train_flags(Config(), args).data.size == (96, 160)
