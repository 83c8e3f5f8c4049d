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


def test_a_head_for_cityscapes_categories_starts_from_the_classes_they_group(tiny_model_dir):
    """train19 -> the 7 categories: each category's row is the mean of its member classes' rows."""
    from cityseg.classes import class_set
    from cityseg.models import load_model, network_from_model
    from cityseg.models.saved import mapped_head_rows

    categories, train19 = class_set("categories"), class_set("train19")
    members = mapped_head_rows(train19, categories)
    named = {categories.names[c]: [train19.names[k] for k in rows] for c, rows in enumerate(members)}
    assert named["flat"] == ["road", "sidewalk"] and named["sky"] == ["sky"]
    assert named["vehicle"] == ["car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert sorted(k for rows in members for k in rows) == list(range(19))  # every train class in one category

    trained = state_of(load_model(tiny_model_dir)[0])
    net, kept = network_from_model(tiny_model_dir, categories.names, classes=categories)
    got = state_of(net)
    assert not kept
    for key in (k for k in got if k.startswith("segmentation_head.")):
        for category, rows in enumerate(members):
            assert np.allclose(got[key][category], trained[key][rows].mean(axis=0), atol=1e-6)
    # a user's table (or an export's list): its ids are its own, not Cityscapes', so its classes map by name
    from cityseg.user_classes import read_class_table

    table = read_class_table({"classes": [{"name": "Traffic_Light", "id": 7}, {"name": "soil", "id": 3}]})
    assert mapped_head_rows(train19, table) == [[train19.names.index("traffic light")], []]
    assert mapped_head_rows(train19, read_class_table({"classes": [{"name": "soil", "id": 7}]})) is None


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
    assert "starting from" in out and "the head for 7 classes starts from its 19 (train19) mapped" in out
    assert "its layers learn at 0.0001 (LR x optim.init_lr_scale 0.1), the head at 0.001" in out
    run = tmp_path / "runs" / "latest"
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert saved["init"] == str(tiny_model_dir) and saved["init_head"] == "new"
    info = yaml.safe_load((run / "model" / "cityseg.json").read_text())
    assert info["arch"] == "unet" and info["encoder_weights"].startswith(f"init {tiny_model_dir}")


@pytest.mark.parametrize(("init", "head", "scale", "rates"), [
    ("", "", 0.1, [(4, 0.003)]),                        # no --init: one group at the LR
    ("model", "kept", 0.1, [(4, 0.0003)]),              # the model's own head: everything at a tenth
    ("model", "new", 0.1, [(2, 0.0003), (2, 0.003)]),   # a new head learns at the LR, the rest at a tenth
    ("model", "new", 1.0, [(4, 0.003)]),                # init_lr_scale 1: the recipe's LR for all
])  # fmt: skip
def test_layers_from_the_init_model_learn_at_a_fraction_of_the_lr(init, head, scale, rates):
    import torch

    from cityseg.config import Config
    from cityseg.training.start import parameter_groups

    net = torch.nn.Module()
    net.encoder, net.segmentation_head = torch.nn.Linear(3, 3), torch.nn.Conv2d(3, 2, 1)
    config = Config()
    config.model.init, config.model.init_head = init, head
    config.optim.lr, config.optim.init_lr_scale = 0.003, scale
    optimizer = torch.optim.AdamW(parameter_groups(net, config), lr=config.optim.lr)
    got = [(len(group["params"]), round(group["lr"], 8)) for group in optimizer.param_groups]
    assert got == rates


def test_init_from_a_model_that_does_not_exist_is_one_line(tiny_pairs, tmp_path):
    from cityseg.classes import class_set
    from cityseg.config import Config
    from cityseg.training.start import prepare_init

    config = Config()
    config.model.init = str(tmp_path / "nothing-here")
    with pytest.raises(CitysegError, match="not found"):
        prepare_init(config, class_set("train19").names)
