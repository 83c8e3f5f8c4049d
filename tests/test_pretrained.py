"""The built-in model: shipped whole and small, its card true to its files, and ready offline in one call."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

NAME = "cityscapes-fpn-lite0"
MAX_BYTES = 15 * 10**6  # the limit for everything the built-in model ships


@pytest.fixture(scope="module")
def builtin():
    from cityseg.model_sources import builtin_models

    models = builtin_models()
    assert NAME in models, f"the built-in model {NAME} is missing from the package ({sorted(models)})"
    return models[NAME]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A generated street scene (photo and truth) at the pairs' size."""
    from cityseg.synth.write import write_scenes

    root = tmp_path_factory.mktemp("builtin-scene")
    write_scenes(root, count=1, seed=3)
    return root / "train" / "1.jpg"


def test_it_ships_whole_and_small(builtin):
    files = {p.name: p.stat().st_size for p in builtin.iterdir()}
    assert {"config.json", "model.safetensors", "model.onnx", "cityseg.json", "README.md", "metrics.json"} <= set(files)
    assert sum(files.values()) <= MAX_BYTES, files


def test_its_weights_are_fp16_and_their_hash_is_the_cards(builtin):
    from safetensors.numpy import load_file

    weights = builtin / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert re.search(rf"model\.safetensors.*{digest}", (builtin / "README.md").read_text())
    floats = [v.dtype for v in load_file(weights).values() if v.dtype.kind == "f"]
    assert floats and set(floats) == {np.dtype("float16")}


def test_its_card_is_hub_metadata_with_the_figures_of_metrics_json(builtin):
    from huggingface_hub import ModelCard

    card = ModelCard.load(builtin / "README.md")
    metrics = json.loads((builtin / "metrics.json").read_text())
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["mIoU (one pass)"] == round(100 * metrics["mIoU"], 2)
    assert results["mIoU (flip)"] == round(100 * metrics["flip"]["mIoU"], 2)
    assert card.data.pipeline_tag == "image-segmentation" and "non-commercial research" in card.text


def test_it_segments_a_generated_scene_alike_in_both_backends(builtin, scene):
    import torch

    from cityseg.engine import Segmenter

    fast, exact = Segmenter.from_pretrained(NAME), Segmenter.from_pretrained(NAME, backend="torch")
    assert fast.backend.name == "onnx" and exact.backend.name == "torch"
    assert all(p.dtype == torch.float32 for p in exact.backend.net.parameters())  # fp16 on disk, fp32 in use
    labels = fast.predict(scene, pairs=True)
    assert labels.shape == (256, 256) and labels.dtype == np.uint8 and labels.max() < 19
    assert (labels == exact.predict(scene, pairs=True)).mean() > 0.99


def test_it_labels_a_held_out_city_well(builtin, real_pairs):
    """Three bremen pairs (a city the model never trained on): most pixels right against their colour masks."""
    from cityseg.engine import Segmenter
    from cityseg.labels.palette import PaletteLabeller
    from cityseg.pairs import read_pair

    segmenter, labeller = Segmenter.from_pretrained(NAME), PaletteLabeller().prepare()
    right = total = 0
    for number in (300, 400, 500):
        photo, mask = read_pair(real_pairs / f"{number}.jpg")
        truth = labeller.label(mask)
        labels = segmenter.predict(photo)
        known = truth != 255
        right += int((labels[known] == truth[known]).sum())
        total += int(known.sum())
    assert right / total > 0.85


def test_a_fresh_process_predicts_without_importing_torch(builtin, scene, tmp_path):
    code = (
        "import sys\n"
        "from cityseg.engine import Segmenter\n"
        f"Segmenter.from_pretrained({NAME!r}).predict(sys.argv[1], pairs=True)\n"
        "heavy = ('torch', 'torchvision', 'segmentation_models_pytorch', 'timm')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(scene)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_server_answers_its_first_request_without_importing_torch(builtin, scene):
    """The API's request path is the engine's: with ONNX Runtime, no torch import lands on the first request."""
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from cityseg.engine import Segmenter\n"
        "from cityseg.serve import create_app\n"
        f"app = create_app(Segmenter.from_pretrained({NAME!r}))\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "with TestClient(app) as client:\n"
        "    answer = client.post('/predict', content=data, headers={'Content-Type': 'image/jpeg'})\n"
        "heavy = ('torch', 'torchvision', 'segmentation_models_pytorch', 'timm')\n"
        "print(answer.status_code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(scene)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "200 []"


def test_predict_by_name_writes_into_predictions_by_default(builtin, scene, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cityseg.cli", "predict", NAME, str(scene), "--pairs", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "predictions").iterdir())
    assert written == [f"{scene.stem}_color.png", f"{scene.stem}_overlay.jpg", f"{scene.stem}_trainIds.png"], written
    assert "ONNX Runtime" in done.stdout


def test_exporting_it_needs_an_out_file(builtin):
    from cityseg.errors import CitysegError
    from cityseg.export import export_onnx

    with pytest.raises(CitysegError, match=r"built-in model, read-only here; pass --out"):
        export_onnx(NAME)
