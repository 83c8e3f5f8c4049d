"""Export: ONNX fp32 and int8, checked before writing; the ONNX backend agrees with PyTorch."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from cityseg.backends import onnx_session
from cityseg.cli import main
from cityseg.engine import Segmenter
from cityseg.errors import CitysegError
from cityseg.export import ExportOptions, export_onnx
from cityseg.synth import render_scene

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, tiny_pairs):
    """10 synthetic pairs plus one broken file; asking for 2 check + 9 calibration images reads all 11."""
    root = shutil.copytree(tiny_pairs, tmp_path_factory.mktemp("scenes") / "pairs")
    (root / "train" / "11.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scenes, tiny_model_dir):
    model = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("exported") / "model")
    # run from an empty working folder: ONNX tools save large graphs with external-data files named after
    # uuids beside them, which must land in the export's own temporary folder, never in the user's folder
    working = tmp_path_factory.mktemp("working-folder")
    previous = os.getcwd()
    os.chdir(working)
    try:
        options = {"calibration_images": 9, "check_images": 2, "min_agreement": 0}
        report = export_onnx(model, ExportOptions(quantize="int8", calibration=scenes, pairs=True, **options))
    finally:
        os.chdir(previous)
    assert not list(working.iterdir()), "export left files in the working folder"
    return model, report


def test_export_writes_fp32_and_int8_with_their_figures(exported):
    model, report = exported
    assert (model / "model.onnx").is_file() and (model / "model.int8.onnx").is_file()
    assert report.fp32_max_logit_diff < 1e-3 and report.fp32_other_size_max_diff < 1e-3
    assert report.fp32_agreement > 0.999
    assert 0.5 < report.int8_agreement <= 1 and 0 <= report.int8_miou_vs_fp32 <= 1
    assert report.check_images == 2 and report.calibration_images == 8  # 9 wanted, 1 file broken
    assert report.truth_images == 2 and report.fp32_miou is not None and report.int8_miou is not None
    assert len(report.skipped) == 1 and "11.jpg" in report.skipped[0]  # the broken file was left out, not fatal
    record = json.loads((model / "export.json").read_text())
    assert record["model.int8.onnx"]["int8_agreement"] == report.int8_agreement
    assert record["model.int8.onnx"]["quantization"]["per_channel"] is True
    assert "int8_agreement" not in record["model.onnx"]
    assert not [p.name for p in model.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert "argmax agreement" in str(report) and "mIoU" in str(report)


def test_onnx_graphs_have_dynamic_axes_folded_batchnorm_and_int8_weights(exported):
    model, _ = exported
    graph = onnx.load(str(model / "model.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert "BatchNormalization" not in {node.op_type for node in graph.node}
    int8 = onnx.load(str(model / "model.int8.onnx")).graph
    ops = {node.op_type for node in int8.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = {init.name: init for init in int8.initializer}
    per_channel = [
        n
        for n in int8.node
        if n.op_type == "DequantizeLinear" and len(weights.get(n.input[1], onnx.TensorProto()).dims)
    ]
    assert per_channel  # a scale vector, one per output channel
    session = onnx_session(model / "model.int8.onnx", threads=1)
    logits = session.run(None, {"image": np.zeros((2, 3, 96, 128), np.float32)})[0]
    assert logits.shape == (2, 19, 96, 128)  # any batch, any size (multiple of the encoder stride)


def test_onnx_and_torch_backends_agree_on_photos_of_any_size(exported):
    model, _ = exported
    torch_model = Segmenter.from_pretrained(model)
    fp32 = Segmenter.from_pretrained(model, backend="onnx", onnx_file="model.onnx", threads=1)
    int8 = Segmenter.from_pretrained(model, backend="onnx", threads=1)
    assert int8.backend.path.name == "model.int8.onnx"  # the int8 file is preferred when present
    rng = np.random.default_rng(3)
    photos = [render_scene(rng, size)[0] for size in ((96, 160), (64, 64), (50, 80))]
    for photo in photos:
        reference = torch_model.predict(photo)
        assert (fp32.predict(photo) == reference).mean() > 0.999
        assert int8.predict(photo).shape == reference.shape
    batched = fp32.predict_batch(photos)
    assert [b.shape for b in batched] == [p.shape[:2] for p in photos]


def test_openvino_backend_runs_the_same_files_with_the_same_answers(exported, tmp_path):
    pytest.importorskip("openvino", reason="the optional extra cityseg[openvino] is not installed")
    model, _ = exported
    torch_model = Segmenter.from_pretrained(model)
    fp32 = Segmenter.from_pretrained(model, backend="openvino", onnx_file="model.onnx", threads=1)
    int8 = Segmenter.from_pretrained(model, backend="openvino", threads=1)
    onnx_int8 = Segmenter.from_pretrained(model, backend="onnx", threads=1)
    assert int8.backend.path.name == "model.int8.onnx" and "OpenVINO" in str(int8.backend)
    rng = np.random.default_rng(4)
    photos = [render_scene(rng, size)[0] for size in ((96, 160), (64, 64))]
    for photo in photos:
        reference = torch_model.predict(photo)
        assert (fp32.predict(photo) == reference).mean() > 0.999
        # one QDQ graph, two runtimes' int8 kernels (rounding differs): OpenVINO's is as faithful as ONNX Runtime's
        assert (int8.predict(photo) == reference).mean() >= (onnx_int8.predict(photo) == reference).mean() - 0.05
    assert [p.shape for p in fp32.predict_batch(photos)] == [p.shape[:2] for p in photos]
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    (broken / "model.int8.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CitysegError, match="damaged") as info:
        Segmenter.from_pretrained(broken, backend="openvino")
    assert "\n" not in str(info.value)


def test_openvino_backend_without_openvino_says_what_to_install(exported, monkeypatch):
    import sys

    model, _ = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if the extra were not installed
    with pytest.raises(CitysegError, match=r"pip install 'cityseg\[openvino\]'"):
        Segmenter.from_pretrained(model, backend="openvino")


def test_int8_below_min_agreement_is_refused_and_nothing_is_written(tiny_model_dir, tmp_path, scenes):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    with pytest.raises(CitysegError, match="nothing was written") as info:
        export_onnx(
            model,
            ExportOptions(
                quantize="int8",
                calibration=scenes,
                pairs=True,
                calibration_images=4,
                check_images=2,
                min_agreement=1.0,
            ),
        )
    assert "below --min-agreement 100%" in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in model.iterdir()) == ["README.md", "cityseg.json", "config.json", "model.safetensors"]


def test_int8_short_of_agreement_tries_again_with_the_encoder_in_fp32(tiny_model_dir, tmp_path, scenes, monkeypatch):
    import cityseg.export

    tried = []
    quantize = cityseg.export.quantize_int8

    def spy(fp32_path, int8_path, calibration, options):
        tried.append(options.keep_fp32)
        return quantize(fp32_path, int8_path, calibration, options)

    monkeypatch.setattr(cityseg.export, "quantize_int8", spy)
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    options = {"calibration": scenes, "pairs": True, "calibration_images": 4, "check_images": 2}
    with pytest.raises(CitysegError, match="nothing was written"):
        export_onnx(model, ExportOptions(quantize="int8", min_agreement=1.0, **options))
    assert tried == [(), ("/encoder",)]  # every layer first, then the encoder in fp32, then refused
    tried.clear()
    with pytest.raises(CitysegError, match="nothing was written"):
        export_onnx(
            model, ExportOptions(quantize="int8", min_agreement=1.0, keep_fp32=("/segmentation_head",), **options)
        )
    assert tried == [("/segmentation_head",)]  # what the user asked for, and only that


def test_keep_fp32_leaves_those_layers_in_float(tiny_model_dir, tmp_path, scenes):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    options = {"calibration": scenes, "pairs": True, "calibration_images": 4, "check_images": 2}
    report = export_onnx(model, ExportOptions(quantize="int8", min_agreement=0, keep_fp32=("/encoder",), **options))
    assert "with /encoder kept in fp32" in str(report)
    graph = onnx.load(str(model / "model.int8.onnx")).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    int8_weights = {node.name: made_by.get(node.input[1]) == "DequantizeLinear" for node in convs}
    encoder = [name for name in int8_weights if name.startswith("/encoder")]
    decoder = [name for name in int8_weights if not name.startswith("/encoder")]
    assert encoder and decoder
    assert not any(int8_weights[name] for name in encoder) and all(int8_weights[name] for name in decoder)


def test_bad_export_requests_are_one_line_errors(exported, tmp_path):
    model, _ = exported
    with pytest.raises(CitysegError, match="needs --calibration"):
        export_onnx(model, ExportOptions(quantize="int8"))
    with pytest.raises(CitysegError, match="not found"):
        export_onnx(model, ExportOptions(quantize="int8", calibration=tmp_path / "missing"))
    (tmp_path / "one").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one" / "a.png")
    with pytest.raises(CitysegError, match="at least 2"):
        export_onnx(model, ExportOptions(quantize="int8", calibration=tmp_path / "one"))
    with pytest.raises(CitysegError, match="not found"):
        export_onnx(tmp_path / "no-model")
    with pytest.raises(CitysegError, match="percentage"):
        export_onnx(model, ExportOptions(min_agreement=99))


def test_cli_export_fp32_without_photos_checks_on_noise(tmp_path, exported, capsys):
    model = tmp_path / "model"
    shutil.copytree(exported[0], model)
    (model / "model.onnx").unlink()
    assert main(["export", str(model), "--format", "onnx"]) == 0
    assert "largest logit difference" in capsys.readouterr().out
    assert (model / "model.onnx").is_file()
    assert main(["export", str(model), "--quantize", "int8"]) == 2
    assert "needs --calibration" in capsys.readouterr().err
