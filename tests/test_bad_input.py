"""The bad-input matrix: every command against every kind of bad input it can meet.

Each case asserts what the README promises: exit status 2, exactly one line on stderr
(``cityseg: error: ...``) that names the file or setting at fault, no traceback, and nothing on stdout
that looks like one. The inputs are made once per module in a temporary folder.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from cityseg.cli import main


def pair_folder(root: Path, name: str, writer) -> Path:
    """``root/name/train/1.jpg`` written by ``writer(path)``: a dataset of one bad pair image."""
    folder = root / name / "train"
    folder.mkdir(parents=True)
    writer(folder / "1.jpg")
    return root / name


def png_claiming(path: Path, width: int, height: int) -> None:
    """A valid 1x1 grey PNG whose header claims ``width`` x ``height``: a decompression bomb to PIL."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_pairs, tiny_model_dir):
    root = tmp_path_factory.mktemp("bad")
    good_pair = sorted((tiny_pairs / "train").glob("*.jpg"))[0]
    blocker = root / "a-regular-file"
    blocker.write_text("not a folder")
    photo = root / "photo.jpg"
    Image.open(good_pair).crop((0, 0, 256, 256)).save(photo)
    made = SimpleNamespace(root=root, blocker=blocker, photo=photo, model=tiny_model_dir, pairs=tiny_pairs)
    made.missing = root / "nothing-here"
    made.empty = root / "empty"
    made.empty.mkdir()
    made.zero = pair_folder(root, "zero", lambda p: p.write_bytes(b""))
    made.truncated = pair_folder(root, "truncated", lambda p: p.write_bytes(good_pair.read_bytes()[:2000]))
    made.not_image = pair_folder(root, "not-image", lambda p: p.write_text("this is text, not a JPEG\n"))
    made.square = pair_folder(root, "square", lambda p: Image.new("RGB", (256, 256), (90, 90, 90)).save(p))
    made.bomb = pair_folder(root, "bomb", lambda p: png_claiming(p.with_suffix(".png"), 40_000, 20_000))
    made.photo_zero = root / "zero-photo.jpg"
    made.photo_zero.write_bytes(b"")
    made.photo_text = root / "text-photo.png"
    made.photo_text.write_text("hello")
    made.photo_bomb = root / "bomb-photo.png"
    png_claiming(made.photo_bomb, 40_000, 20_000)
    made.photo_truncated = root / "truncated-photo.jpg"
    made.photo_truncated.write_bytes(photo.read_bytes()[:600])
    made.no_weights = root / "model-without-weights"
    shutil.copytree(tiny_model_dir, made.no_weights)
    (made.no_weights / "model.safetensors").write_bytes(b"\x00" * 40)
    made.bad_info = root / "model-with-bad-info"
    shutil.copytree(tiny_model_dir, made.bad_info)
    (made.bad_info / "cityseg.json").write_text("{ not json")
    made.run = root / "run-with-damaged-checkpoint"
    (made.run / "checkpoints").mkdir(parents=True)
    (made.run / "config.yaml").write_text(f"data:\n  root: {tiny_pairs}\n")
    (made.run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    made.bad_yaml = root / "broken.yaml"
    made.bad_yaml.write_text("data: [unclosed\n")
    return made


# (id, argv from the bad inputs, a piece of the file or setting the one line must name)
CASES = [
    ("label-missing", lambda b: ["label", str(b.missing)], "nothing-here"),
    ("label-empty-folder", lambda b: ["label", str(b.empty)], "empty"),
    ("label-zero-byte", lambda b: ["label", str(b.zero), "--workers", "1"], "1.jpg"),
    ("label-truncated", lambda b: ["label", str(b.truncated), "--workers", "1"], "1.jpg"),
    ("label-not-an-image", lambda b: ["label", str(b.not_image), "--workers", "1"], "1.jpg"),
    ("label-wrong-size", lambda b: ["label", str(b.square), "--workers", "1"], "1.jpg"),
    ("label-decompression-bomb", lambda b: ["label", str(b.bomb), "--workers", "1"], "1.png"),
    ("label-unwritable-cache", lambda b: ["label", str(b.pairs), "--cache-dir", str(b.blocker / "c")],
     "a-regular-file"),
    ("label-bad-key", lambda b: ["label", str(b.pairs), "--set", "labels.nope=1"], "labels.nope"),
    ("label-bad-value", lambda b: ["label", str(b.pairs), "--set", "labels.k=many"], "labels.k"),
    ("label-bad-yaml", lambda b: ["label", str(b.pairs), "--config", str(b.bad_yaml)], "broken.yaml"),
    ("synth-unwritable", lambda b: ["synth", str(b.blocker / "scenes"), "--count", "2"], "a-regular-file"),
    ("train-missing", lambda b: ["train", str(b.missing)], "nothing-here"),
    ("train-empty-folder", lambda b: ["train", str(b.empty)], "empty"),
    ("train-bad-key", lambda b: ["train", str(b.pairs), "--set", "train.nope=1"], "train.nope"),
    ("train-bad-value", lambda b: ["train", str(b.pairs), "--set", "train.max_epochs=abc"], "train.max_epochs"),
    ("train-bad-choice", lambda b: ["train", str(b.pairs), "--set", "optim.loss=focal"], "optim.loss"),
    ("train-bad-yaml", lambda b: ["train", str(b.pairs), "--config", str(b.bad_yaml)], "broken.yaml"),
    ("train-damaged-checkpoint", lambda b: ["train", "--resume", str(b.run)], "last.ckpt"),
    ("train-missing-run", lambda b: ["train", "--resume", str(b.missing)], "nothing-here"),
    ("evaluate-missing", lambda b: ["evaluate", str(b.missing)], "nothing-here"),
    ("evaluate-damaged-weights", lambda b: ["evaluate", str(b.no_weights), "--data", str(b.pairs)], "safetensors"),
    ("evaluate-damaged-info", lambda b: ["evaluate", str(b.bad_info), "--data", str(b.pairs)], "cityseg.json"),
    ("evaluate-empty-data", lambda b: ["evaluate", str(b.model), "--data", str(b.empty)], "empty"),
    ("predict-missing-model", lambda b: ["predict", str(b.missing), str(b.photo), "--out", str(b.root / "p1")],
     "nothing-here"),
    ("predict-missing-photo", lambda b: ["predict", str(b.model), str(b.missing), "--out", str(b.root / "p2")],
     "nothing-here"),
    ("predict-zero-byte", lambda b: ["predict", str(b.model), str(b.photo_zero), "--out", str(b.root / "p3")],
     "zero-photo.jpg"),
    ("predict-not-an-image", lambda b: ["predict", str(b.model), str(b.photo_text), "--out", str(b.root / "p4")],
     "text-photo.png"),
    ("predict-truncated", lambda b: ["predict", str(b.model), str(b.photo_truncated), "--out", str(b.root / "p5")],
     "truncated-photo.jpg"),
    ("predict-decompression-bomb", lambda b: ["predict", str(b.model), str(b.photo_bomb), "--out", str(b.root / "p6")],
     "bomb-photo.png"),
    ("predict-unwritable", lambda b: ["predict", str(b.model), str(b.photo), "--out", str(b.blocker / "out")],
     "a-regular-file"),
    ("predict-damaged-weights", lambda b: ["predict", str(b.no_weights), str(b.photo), "--out", str(b.root / "p7")],
     "safetensors"),
    ("predict-damaged-info", lambda b: ["predict", str(b.bad_info), str(b.photo), "--out", str(b.root / "p8")],
     "cityseg.json"),
    ("export-missing", lambda b: ["export", str(b.missing)], "nothing-here"),
    ("export-damaged-weights", lambda b: ["export", str(b.no_weights)], "safetensors"),
    ("export-unwritable", lambda b: ["export", str(b.model), "--out", str(b.blocker / "m.onnx")], "a-regular-file"),
    ("serve-missing", lambda b: ["serve", str(b.missing), "--port", "0"], "nothing-here"),
    ("serve-damaged-info", lambda b: ["serve", str(b.bad_info), "--port", "0"], "cityseg.json"),
    ("serve-exposed-without-token", lambda b: ["serve", str(b.model), "--host", "0.0.0.0", "--port", "0"], "0.0.0.0"),
    ("predict-hub-not-cached",
     lambda b: ["predict", "someone/never-fetched", str(b.photo), "--out", str(b.root / "p9")],
     "someone/never-fetched"),
    ("train-init-other-arch", lambda b: ["train", str(b.pairs), "--init", str(b.model), "--arch", "fpn"], "fpn"),
    ("train-init-missing", lambda b: ["train", str(b.pairs), "--init", str(b.missing)], "nothing-here"),
    ("push-missing", lambda b: ["push", str(b.missing), "someone/x", "--to-folder", str(b.root / "u1")],
     "nothing-here"),
    ("push-bad-repo-id", lambda b: ["push", str(b.model), "nobody", "--to-folder", str(b.root / "u2")], "nobody"),
    ("push-unwritable", lambda b: ["push", str(b.model), "someone/x", "--to-folder", str(b.blocker / "u")],
     "a-regular-file"),
    ("push-without-token", lambda b: ["push", str(b.model), "someone/x"], "HF_TOKEN"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "names"), [pytest.param(c[1], c[2], id=c[0]) for c in CASES])
def test_bad_input_gives_exit_2_and_one_line_naming_it(bad, argv, names, capsys, monkeypatch, tmp_path):
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.delenv("CITYSEG_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no token saved by `hf auth login` either
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no test touches the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code = main(argv(bad))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cityseg: error: "), err
    assert names in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_the_matrix_covers_every_command():
    from cityseg.cli import COMMANDS

    # every registered command but the demo and the list of models, which read no input of the user's
    assert {case[0].split("-")[0] for case in CASES} == set(COMMANDS) - {"demo", "models"}
    assert len(CASES) >= 35
