"""``train --init``: fine-tuning starts from the whole trained network; other classes get a fresh last layer."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cityseg.errors import CitysegError


def state_of(net) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in net.state_dict().items()}


def test_the_same_classes_keep_every_weight(tiny_model_dir):
    from cityseg.classes import class_set
    from cityseg.models import load_model, network_from_model

    trained, _ = load_model(tiny_model_dir)
    net, kept = network_from_model(tiny_model_dir, class_set("train19").names)
    assert kept and net.training
    expected, got = state_of(trained), state_of(net)
    assert expected.keys() == got.keys() and all(np.array_equal(expected[k], got[k]) for k in expected)


def test_other_classes_keep_all_but_the_last_layer(tiny_model_dir):
    from cityseg.classes import class_set
    from cityseg.models import load_model, network_from_model

    trained = state_of(load_model(tiny_model_dir)[0])
    net, kept = network_from_model(tiny_model_dir, class_set("categories").names)
    got = state_of(net)
    head = [key for key in got if key.startswith("segmentation_head.")]
    assert not kept and head and got[head[0]].shape[0] == 7  # the head is sized for the 7 categories
    assert all(np.array_equal(trained[k], got[k]) for k in got if k not in head)
    assert not np.array_equal(trained[head[0]][:7], got[head[0]])  # and starts afresh


def test_prepare_init_takes_the_architecture_and_refuses_another(tiny_model_dir, tiny_test_model):
    from cityseg.classes import class_set
    from cityseg.config import Config
    from cityseg.training.start import prepare_init

    config = Config()
    config.model.init = str(tiny_model_dir)
    line = prepare_init(config, class_set("categories").names)
    assert (config.model.arch, config.model.encoder) == (tiny_test_model["arch"], tiny_test_model["encoder"])
    assert config.model.init_head == "new" and "every layer but the last" in line and "7 classes" in line
    other = Config()
    other.model.init, other.model.arch = str(tiny_model_dir), "fpn"
    with pytest.raises(CitysegError, match=r"is unet/tu-mobilenetv3_small_050 but the run asks for fpn/"):
        prepare_init(other, class_set("train19").names)


def test_a_run_started_from_a_model_says_so_and_records_it(tiny_model_dir, tiny_pairs, tmp_path, capsys):
    from cityseg.cli import main

    code = main(
        [
            "train",
            str(tiny_pairs),
            "--init",
            str(tiny_model_dir),
            "--classes",
            "categories",
            "--size",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "3",
            "--workers",
            "0",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--set",
            "train.progress=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "starting from" in out and "the head starts afresh for 7 classes" in out
    run = tmp_path / "runs" / "latest"
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert saved["init"] == str(tiny_model_dir) and saved["init_head"] == "new"
    info = yaml.safe_load((run / "model" / "cityseg.json").read_text())
    assert info["arch"] == "unet" and info["encoder_weights"].startswith(f"init {tiny_model_dir}")


def test_init_from_a_model_that_does_not_exist_is_one_line(tiny_pairs, tmp_path):
    from cityseg.classes import class_set
    from cityseg.config import Config
    from cityseg.training.start import prepare_init

    config = Config()
    config.model.init = str(tmp_path / "nothing-here")
    with pytest.raises(CitysegError, match="not found"):
        prepare_init(config, class_set("train19").names)
