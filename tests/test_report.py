"""The run report: one self-contained HTML page with config, metrics and embedded figures."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from cityseg import plots
from cityseg.classes import class_set
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.metrics import metrics_report
from cityseg.models import ModelInfo
from cityseg.report import write_report

# IoU: road 3/4 = 75.00 %, car 4/5 = 80.00 %, bus absent; aAcc 7/8 = 87.50 %, mAcc (3/4 + 1)/2 = 87.50 %
CONFMAT = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
NAMES = ["road", "car", "bus"]


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "runs" / "2024-01-02_03-04-05"
    (run / "plots").mkdir(parents=True)
    config = Config()
    config.set("train.max_epochs", 7)
    config.to_yaml(run / "config.yaml")
    report = metrics_report(CONFMAT, NAMES)
    # as training writes it: the test report, run facts, and the untrained network's scores (mIoU 12.34 %)
    baseline = {"mIoU": 0.1234, "mAcc": 0.2, "aAcc": 0.3, "per_class": {}}
    (run / "metrics.json").write_text(json.dumps({**report, "split": "test", "epochs": 3, "baseline": baseline}))
    (run / "notes.json").write_text(json.dumps({"something": "else"}))  # not a metrics report: left out
    info = ModelInfo.from_class_set("unet", "resnet18", class_set("train19"), (128, 256), encoder_weights="imagenet")
    (run / "model").mkdir()
    (run / "model" / "cityseg.json").write_text(json.dumps(info.to_dict()))
    (run / "model" / "metrics.json").write_text(json.dumps(report))  # save_model's copy: not shown twice
    plots.plot_class_iou(report, run / "plots" / "class_iou.png")
    plots.plot_confusion(CONFMAT, NAMES, run / "plots" / "confusion.png")
    return run


def test_report_embeds_figures_and_metrics(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()

    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2
    embedded = {base64.b64decode(data) for data in images}
    assert embedded == {(run_dir / "plots" / name).read_bytes() for name in ("class_iou.png", "confusion.png")}

    assert page.count("<h2>metrics</h2>") == 1
    assert "<td>split</td><td>test</td>" in page and "<td>epochs</td><td>3</td>" in page
    assert "untrained baseline" in page and "12.34" in page
    for value in ("75.00", "80.00", "87.50"):  # IoU road, IoU car, aAcc and mAcc
        assert value in page
    assert "bus (absent)" in page
    assert "max_epochs: 7" in page  # the config
    assert "resnet18" in page and "128 x 256" in page and "imagenet" in page  # the model
    assert "something" not in page


def test_report_is_self_contained(run_dir):
    page = write_report(run_dir).read_text()
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)  # no external images, scripts or styles
    assert "<link" not in page and "<script" not in page


def test_report_escapes_text(run_dir):
    (run_dir / "config.yaml").write_text("note: <script>alert(1)</script>\n")
    page = write_report(run_dir).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_report_of_an_empty_run_and_of_no_run(tmp_path):
    page = write_report(tmp_path).read_text()
    assert "Nothing to report yet" in page
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # written atomically, no temporaries left
    with pytest.raises(CitysegError, match=r"run folder .* not found"):
        write_report(tmp_path / "missing")
