"""A user's own classes: the class table file, its checks, and a model that keeps it (train, predict, evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.cli import main
from cityseg.errors import CitysegError
from cityseg.user_classes import TABLE_FILE, read_class_table, table_yaml

FARM = {
    "name": "farm",
    "ignore": 0,
    "classes": [
        {"name": "soil", "id": 1, "color": "#784f14", "category": "ground"},
        {"name": "crop", "ids": [2, 3], "color": [20, 160, 40], "category": "plant"},
        {"name": "sky", "id": 4, "draw": [70, 130, 180], "category": "sky"},
    ],
}


def _write(path: Path, table) -> Path:
    path.write_text(yaml.safe_dump(table, sort_keys=False))
    return path


def test_a_table_file_becomes_a_class_set(tmp_path):
    classes = class_set(str(_write(tmp_path / "farm.yaml", FARM)))
    assert classes.name == "farm" and classes.names == ("soil", "crop", "sky")
    assert classes.colors == ((120, 79, 20), (20, 160, 40), (70, 130, 180))  # hex and list colours; draw
    assert classes.class_to_id == (1, 2, 4) and classes.ignore_id == 0
    assert classes.from_label_ids(np.array([1, 2, 3, 4, 0, 9])).tolist() == [0, 1, 1, 2, IGNORE_INDEX, IGNORE_INDEX]
    assert classes.to_label_ids(np.array([0, 1, 2, IGNORE_INDEX])).tolist() == [1, 2, 4, 0]
    assert [entry["category"] for entry in classes.table["classes"]] == ["ground", "plant", "sky"]
    assert class_set(classes.spec()).table == classes.table  # the dict travels as itself (labeller.json)
    assert read_class_table(yaml.safe_load(table_yaml(classes))).table == classes.table  # classes.yaml reads back


def test_ids_default_to_the_class_index_and_colours_to_a_palette(tmp_path):
    classes = class_set(str(_write(tmp_path / "plain.yml", [{"name": "a"}, {"name": "b"}])))
    assert classes.name == "plain" and classes.class_to_id == (0, 1) and classes.colors[0] != classes.colors[1]


BAD_TABLES = [
    ("duplicate-name", [{"name": "road", "id": 1}, {"name": "road", "id": 2}], "class name 'road' is used twice"),
    ("duplicate-id", [{"name": "a", "id": 1}, {"name": "b", "ids": [2, 1]}], "id 1 is given to both 'a' and 'b'"),
    (
        "duplicate-colour",
        [{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": "#010203"}],
        r"color \(1, 2, 3\) is given to both 'a' and 'b'",
    ),
    ("ignore-is-a-class", {"ignore": 3, "classes": [{"name": "a", "id": 3}]}, "ignore value 3 is also an id of"),
    (
        "ignore-colour-is-a-class",
        {"ignore_color": [0, 0, 0], "classes": [{"name": "a", "color": [0, 0, 0]}]},
        r"ignore_color \(0, 0, 0\) is also the color of class 'a'",
    ),
    ("unknown-key", [{"name": "a", "colour": [1, 2, 3]}], "class 'a' has unknown key 'colour'"),
    ("id-out-of-range", [{"name": "a", "id": 300}], "an id of 'a' must be a whole number 0-255, not 300"),
    ("bad-colour", [{"name": "a", "color": [1, 2]}], r"must be \[r, g, b\]"),
    ("some-ids", [{"name": "a", "id": 1}, {"name": "b"}], "class 'b' has no id but 'a' has one"),
    ("some-categories", [{"name": "a", "category": "x"}, {"name": "b"}], "class 'b' has no category but 'a'"),
    ("built-in-name", {"name": "train19", "classes": [{"name": "a"}]}, "name 'train19' is a built-in class set"),
    ("no-classes", {"name": "x"}, "needs a non-empty 'classes:' list"),
    ("no-name", [{"id": 3}], "class 1 needs a name"),
]


@pytest.mark.parametrize(("table", "message"), [pytest.param(t, m, id=i) for i, t, m in BAD_TABLES])
def test_a_bad_table_is_one_line_naming_the_file(tmp_path, table, message):
    path = _write(tmp_path / "mine.yaml", table)
    with pytest.raises(CitysegError, match=message) as error:
        class_set(str(path))
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_unreadable_tables_are_named(tmp_path):
    with pytest.raises(CitysegError, match=r"cannot read class table .*missing.yaml"):
        class_set(str(tmp_path / "missing.yaml"))
    (tmp_path / "broken.yaml").write_text("classes: [unclosed\n")
    with pytest.raises(CitysegError, match=r"broken.yaml is not valid YAML"):
        class_set(str(tmp_path / "broken.yaml"))


def test_the_cli_names_a_bad_table_in_one_line(tmp_path, tiny_pairs, capsys):
    path = _write(tmp_path / "dupes.yaml", BAD_TABLES[1][1])
    assert main(["label", str(tiny_pairs), "--classes", str(path), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "id 1 is given to both" in err


def test_a_model_folder_keeps_its_table(tmp_path, tiny_model_saver):
    from cityseg.models import load_model
    from cityseg.outputs import ids_encoder

    folder = tiny_model_saver(tmp_path / "model", classes=FARM)
    _, info = load_model(folder)
    assert info.class_set_name == "farm" and info.names == ("soil", "crop", "sky")
    assert info.classes.table == class_set(FARM).table and class_set(str(folder / TABLE_FILE)).table == info.class_table
    to_ids, suffix = ids_encoder(info, "labelids")  # the table's own ids, its ignore value for ignored pixels
    assert suffix == "labelIds" and to_ids(np.array([0, 1, 2, IGNORE_INDEX])).tolist() == [1, 2, 4, 0]
    with pytest.raises(CitysegError, match="no Cityscapes train ids"):
        ids_encoder(info, "trainids")
    saved = json.loads((folder / "cityseg.json").read_text())
    saved["class_table"]["classes"][1]["ids"] = [1]  # the same id as soil's: damaged
    (folder / "cityseg.json").write_text(json.dumps(saved))
    with pytest.raises(CitysegError, match=r"cityseg.json \(class_table\): id 1 is given to both"):
        load_model(folder)


# ---- a dataset of the user's own classes, trained on end to end ------------------------------------------------

# the farm's own ids, from a scene's Cityscapes label ids: road and sidewalk are soil, vegetation and terrain crop
OWN_IDS = {7: 1, 8: 1, 21: 2, 22: 3, 23: 4}


def _own_dataset(root: Path, count: int = 6) -> Path:
    """images/ + labels/ whose label images hold the farm's own ids (0 elsewhere), drawn from synth scenes."""
    from cityseg.synth import render_scene

    mapping = np.zeros(256, np.uint8)
    for cityscapes_id, own in OWN_IDS.items():
        mapping[cityscapes_id] = own
    for split, numbers in (("train", range(count - 2)), ("val", range(count - 2, count))):
        for folder in ("images", "labels"):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for number in numbers:
            photo, ids = render_scene(np.random.default_rng([4, number]), (64, 96))
            Image.fromarray(photo).save(root / "images" / split / f"{number}.png")
            Image.fromarray(mapping[ids]).save(root / "labels" / split / f"{number}.png")
    return root


@pytest.mark.slow
def test_train_predict_and_evaluate_with_a_class_table(tmp_path, capsys):
    data = _own_dataset(tmp_path / "farm-data")
    table = _write(tmp_path / "farm.yaml", FARM)
    runs = tmp_path / "runs"
    settings = ["data.size=64,96", "data.batch_size=2", "data.workers=0", "data.val_fraction=0.25"]
    settings += ["model.encoder=resnet18", "model.encoder_depth=3", "model.decoder_width=16", "optim.schedule=none"]
    settings += ["train.max_epochs=1", "train.progress=false", "train.threads=1", f"data.cache_dir={tmp_path}/c"]
    argv = ["train", str(data), "--classes", str(table), "--runs-dir", str(runs)]
    assert main([*argv, *(x for s in settings for x in ("--set", s))]) == 0
    run = (runs / "latest").resolve()
    info = json.loads((run / "model" / "cityseg.json").read_text())
    assert info["class_set"] == "farm" and info["names"] == ["soil", "crop", "sky"]
    assert read_class_table(run / "model" / TABLE_FILE).names == ("soil", "crop", "sky")
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["per_class"]) == ["soil", "crop", "sky"] and metrics["images"] == 2
    assert "soil" in (run / "report.html").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(run / "model"), "--data", str(data), "--split", "all"]) == 0  # the folder alone
    assert "crop" in capsys.readouterr().out
    out = tmp_path / "predicted"
    photo = data / "images" / "val" / "5.png"
    assert main(["predict", str(run), str(photo), "--out", str(out), "--ids", "labelids"]) == 0
    ids = np.asarray(Image.open(out / "5_labelIds.png"))
    assert set(np.unique(ids)) <= {1, 2, 4}  # the table's ids (crop is written as its first id, 2)
    colours = np.asarray(Image.open(out / "5_color.png").convert("RGB")).reshape(-1, 3)
    assert {tuple(c) for c in np.unique(colours, axis=0)} <= {(120, 79, 20), (20, 160, 40), (70, 130, 180)}
