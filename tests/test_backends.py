"""Backends: one registry, each backend loads itself from a model folder; the ONNX file chosen; clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from cityseg.backends import (
    BACKENDS,
    INT8_ONNX_FILE,
    ONNX_FILE,
    OnnxBackend,
    TorchBackend,
    find_onnx_file,
    load_backend,
    read_model_info,
)
from cityseg.errors import CitysegError
from cityseg.extras import available

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory, tiny_model_saver):
    """A tiny model folder of the 7 categories with the fp32 ONNX export of its own weights beside them."""
    from cityseg.models import load_model
    from cityseg.onnx_graphs import torch_to_onnx

    model = tiny_model_saver(tmp_path_factory.mktemp("exported") / "categories", classes="categories")
    torch_to_onnx(load_model(model)[0], model / ONNX_FILE, np.zeros((1, 3, 64, 64), dtype=np.float32))
    return model


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_registered_backend_runs_the_model_folder_as_torch_does(name, exported_model):
    extra = getattr(BACKENDS[name], "extra", None)
    if extra and not available(extra):  # a backend whose extra is missing says what to install
        with pytest.raises(CitysegError, match=rf"pip install 'cityseg\[{extra}\]'"):
            load_backend(name, exported_model)
        return
    backend, info = load_backend(name, exported_model, threads=1)
    assert type(backend) is BACKENDS[name] and backend.name == name
    assert info == read_model_info(exported_model)
    batch = np.random.default_rng(0).standard_normal((2, 3, *info.input_size)).astype(np.float32)
    reference = backend if name == "torch" else load_backend("torch", exported_model)[0]
    np.testing.assert_allclose(backend(batch), reference(batch), rtol=1e-4, atol=1e-4)


def test_an_unknown_backend_is_refused_with_the_registered_names():
    with pytest.raises(CitysegError, match="unknown backend 'tensorrt'; choose one of: auto, torch, onnx, openvino"):
        load_backend("tensorrt", None)


def test_torch_backend_loads_the_weights_and_the_info(tiny_model_dir):
    backend, info = load_backend("torch", tiny_model_dir)
    assert isinstance(backend, TorchBackend) and str(backend) == "PyTorch"
    assert info == read_model_info(tiny_model_dir)
    logits = backend(np.zeros((2, 3, *info.input_size), dtype=np.float32))
    assert logits.shape == (2, info.num_classes, *info.input_size) and logits.dtype == np.float32


def test_onnx_file_is_int8_then_fp32_or_the_one_named(tmp_path):
    with pytest.raises(CitysegError, match="run cityseg export"):
        find_onnx_file(tmp_path)
    (tmp_path / ONNX_FILE).write_bytes(b"fp32")
    assert find_onnx_file(tmp_path) == tmp_path / ONNX_FILE
    (tmp_path / INT8_ONNX_FILE).write_bytes(b"int8")
    assert find_onnx_file(tmp_path) == tmp_path / INT8_ONNX_FILE
    assert find_onnx_file(tmp_path, ONNX_FILE) == tmp_path / ONNX_FILE  # a name inside the folder
    assert find_onnx_file(tmp_path, tmp_path / ONNX_FILE) == tmp_path / ONNX_FILE  # or a path
    with pytest.raises(CitysegError, match=r"other\.onnx not found"):
        find_onnx_file(tmp_path, "other.onnx")


def test_onnx_backend_refuses_a_file_for_other_classes(tiny_model_dir, tmp_path, exported_model):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    shutil.copy(exported_model / ONNX_FILE, model / ONNX_FILE)  # 7 classes, not 19
    with pytest.raises(CitysegError, match=r"outputs 7 classes but .* lists 19"):
        OnnxBackend.from_model_dir(model)
    shutil.copy(exported_model / "cityseg.json", model / "cityseg.json")  # now the info agrees with the file
    backend, info = load_backend("onnx", model, threads=1)
    assert isinstance(backend, OnnxBackend) and info.num_classes == backend.num_classes() == 7


@pytest.mark.parametrize(("content", "message"), [(None, "not found"), ("{not json", "damaged"), ("[1]", "damaged")])
def test_model_info_problems_are_one_line_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "cityseg.json").write_text(content)
    with pytest.raises(CitysegError, match=message) as error:
        read_model_info(tmp_path)
    assert "\n" not in str(error.value)


def test_model_info_round_trips(tiny_model_dir):
    values = json.loads((tiny_model_dir / "cityseg.json").read_text())
    info = read_model_info(tiny_model_dir)
    assert info.num_classes == 19 and tuple(info.input_size) == tuple(values["input_size"])
