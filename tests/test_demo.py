"""The demo, shrunk: a dozen scenes and one epoch of a tiny network, through every step and output."""

from __future__ import annotations

import json

import pytest

from cityseg.cli import main
from cityseg.config import Config
from cityseg.defaults import DEMO_OUT
from cityseg.demo import DEMO_SCENES, demo_config, run_demo
from cityseg.files import natural_key

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::RuntimeWarning",
    "ignore:.*LeafSpec.*",  # Lightning's own deprecations
)


def test_demo_preset_fits_the_demo_promise():
    config = demo_config("out")
    assert config.data.root.endswith("data") and config.train.runs_dir.endswith("runs")
    assert config.data.cache_dir.endswith("cache")  # everything the demo writes stays under --out
    assert 0 < config.train.budget_minutes <= 8  # leaves time for scenes, labels, testing and the report
    assert config.labels.method == "palette" and config.data.split == "official"


@pytest.mark.slow
def test_reduced_demo_runs_every_step(tmp_path, capsys):
    config = Config.from_yaml("demo").override(
        [
            "data.size=64,64",
            "data.workers=0",
            "model.encoder=resnet18",
            "model.encoder_weights=none",
            "model.encoder_depth=3",
            "model.decoder_width=32",
            "train.max_epochs=1",
            "train.budget_minutes=0",
            "train.progress=false",
        ]
    )
    result = run_demo(tmp_path / "demo", count=12, seed=1, config=config)

    def photos(split: str) -> list[str]:
        return sorted((p.name for p in (tmp_path / "demo" / "data" / split).glob("*.jpg")), key=natural_key)

    assert photos("train") == [f"{i}.jpg" for i in range(1, 11)]
    assert photos("val") == ["1.jpg", "2.jpg"]  # 20% of 12, the test set
    assert result.run_dir.parent == tmp_path / "demo" / "runs"
    assert result.report.is_file() and result.report.read_text().startswith("<!DOCTYPE html>")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert result.miou == metrics["mIoU"] and metrics["images"] == 2
    assert len(result.predictions) == 2 and all(p.is_file() for p in result.predictions)
    assert result.drive == tmp_path / "demo" / "drive.mp4" and result.drive.is_file()
    assert len(list(result.drive_labels.glob("*.png"))) == 30  # 3 s at 10 fps, the exact labels of each frame
    assert result.segmented_drive is not None and result.segmented_drive.is_file()
    assert any((tmp_path / "demo" / "cache").rglob("*.npy"))
    summary = str(result)
    assert "test mIoU" in summary and str(result.report) in summary
    assert str(result.drive) in summary and str(result.segmented_drive) in summary


def test_the_demo_command_hands_its_options_to_run_demo(tmp_path, monkeypatch, capsys):
    import cityseg.demo

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the command sets it for the rest of the process otherwise
    calls = []
    monkeypatch.setattr(cityseg.demo, "run_demo", lambda out, **options: calls.append((out, options)) or "summary")
    out = str(tmp_path / "demo")
    assert main(["demo", "--out", out, "--count", "5", "--seed", "2", "--set", "train.max_epochs=3"]) == 0
    assert capsys.readouterr().out == "summary\n"  # what run_demo returned, printed
    [(given_out, options)] = calls
    assert given_out == out and (options["count"], options["seed"]) == (5, 2)
    assert options["config"] == Config.from_yaml("demo").override(["train.max_epochs=3"])  # the preset, overridden

    assert main(["demo"]) == 0  # the defaults are the demo module's own
    assert calls[-1] == (DEMO_OUT, {"count": DEMO_SCENES, "seed": 0, "config": Config.from_yaml("demo")})
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    shown = capsys.readouterr().out
    assert f"(default {DEMO_OUT})" in shown and f"(default {DEMO_SCENES})" in shown
