"""The optional extras: each command that needs one names the pip install that brings it, on one line."""

from __future__ import annotations

import pytest

from cityseg import extras
from cityseg.errors import CitysegError


@pytest.fixture
def without(monkeypatch):
    """Pretend the given top-level modules are not installed (find_spec finds nothing for them)."""
    hidden: set[str] = set()
    real = extras.find_spec

    def find_spec(name, *args):
        return None if name.split(".")[0] in hidden else real(name, *args)

    monkeypatch.setattr(extras, "find_spec", find_spec)
    return hidden.update


def test_an_installed_extra_is_silent_and_a_missing_one_names_its_pip_install(without):
    for extra in extras.EXTRAS:
        assert extras.available(extra), extra  # the development install has them all
        extras.require(extra, "this")
    without({"onnxscript"})
    assert extras.missing_modules("onnx") == ["onnxscript"]
    with pytest.raises(CitysegError, match=r"^cityseg export needs the onnx extra \(onnxscript not installed\): "
                       r"pip install 'cityseg\[onnx\]'$"):  # fmt: skip
        extras.require("onnx", "cityseg export")


@pytest.mark.parametrize(
    ("hidden", "argv", "extra"),
    [
        ({"fastapi"}, ["serve", "{model}", "--port", "0"], "pip install 'cityseg[serve]'"),
        ({"onnx"}, ["export", "{model}"], "pip install 'cityseg[onnx]'"),
        # ONNX Runtime comes with the core install; a broken install still gets one line
        (
            {"onnxruntime"},
            ["predict", "cityscapes-fpn-lite0", "{photo}", "--out", "{out}", "--backend", "onnx"],
            "pip install onnxruntime",
        ),
        (
            {"openvino"},
            ["predict", "{model}", "{photo}", "--out", "{out}", "--backend", "openvino"],
            "pip install 'cityseg[openvino]'",
        ),
    ],
)
def test_commands_without_their_extra_say_which_to_install(without, hidden, argv, extra, tiny_model_dir, tmp_path,
                                                           capsys):  # fmt: skip
    from PIL import Image

    from cityseg.cli import main

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (100, 110, 120)).save(photo)
    without(hidden)
    values = {"model": str(tiny_model_dir), "photo": str(photo), "out": str(tmp_path / "out")}
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cityseg: error: ") and "\n" not in err
    assert extra in err


def test_training_logs_to_csv_alone_without_tensorboard(without, tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from cityseg.training.trainer import _loggers

    assert [type(logger) for logger in _loggers(tmp_path)] == [CSVLogger, TensorBoardLogger]
    without({"tensorboard"})
    assert [type(logger) for logger in _loggers(tmp_path)] == [CSVLogger]
