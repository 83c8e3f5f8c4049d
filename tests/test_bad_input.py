"""The bad-input matrix: every command against every kind of bad input it can meet.

Each case asserts what the README promises: exit status 2, exactly one line on stderr
(``cityseg: error: ...``) that names the file or setting at fault, no traceback, and nothing on stdout
that looks like one. The inputs are made once per module in a temporary folder.

A case that sets how a command runs (``--workers``, ``--threads``, ``--backend``) also runs as a user gets it,
at the command's defaults (``<id>-at-defaults``): a worker pool and its way of passing errors back are then on
the path, as they are for everyone who does not pass ``--workers 1``.
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


def pair_folder(root: Path, name: str, writer, good: list[Path]) -> Path:
    """``root/name/train/1.jpg`` written by ``writer(path)`` among copies of ``good`` pairs (2.jpg, 3.jpg ...):
    enough images that a command at its default workers hands them to a pool."""
    folder = root / name / "train"
    folder.mkdir(parents=True)
    writer(folder / "1.jpg")
    for number, path in enumerate(good, start=2):
        shutil.copyfile(path, folder / f"{number}.jpg")
    return root / name


def png_claiming(path: Path, width: int, height: int) -> None:
    """A valid 1x1 grey PNG whose header claims ``width`` x ``height``: a decompression bomb to PIL."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def checkpoint_with_pickle_protocol(protocol: int) -> bytes:
    """A small torch.save zip whose pickle claims another protocol: torch warns about it, then fails to read it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": {"net.w": torch.zeros(2)}}, buffer)
    data = bytearray(buffer.getvalue())
    data[data.index(b"\x80\x02}") + 1] = protocol
    return bytes(data)


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_pairs, tiny_model_dir):
    root = tmp_path_factory.mktemp("bad")
    good_pairs = sorted((tiny_pairs / "train").glob("*.jpg"))[:4]
    good_pair = good_pairs[0]
    blocker = root / "a-regular-file"
    blocker.write_text("not a folder")
    photo = root / "photo.jpg"
    Image.open(good_pair).crop((0, 0, 256, 256)).save(photo)
    made = SimpleNamespace(root=root, blocker=blocker, photo=photo, model=tiny_model_dir, pairs=tiny_pairs)
    made.missing = root / "nothing-here"
    made.empty = root / "empty"
    made.empty.mkdir()
    made.zero = pair_folder(root, "zero", lambda p: p.write_bytes(b""), good_pairs)
    made.truncated = pair_folder(root, "truncated", lambda p: p.write_bytes(good_pair.read_bytes()[:2000]), good_pairs)
    made.not_image = pair_folder(root, "not-image", lambda p: p.write_text("this is text, not a JPEG\n"), good_pairs)
    made.square = pair_folder(root, "square", lambda p: Image.new("RGB", (256, 256), (90, 90, 90)).save(p), good_pairs)
    made.bomb = pair_folder(root, "bomb", lambda p: png_claiming(p.with_suffix(".png"), 40_000, 20_000), good_pairs)
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
    made.infinite = root / "model-with-infinite-size"  # found by fuzzing: an OverflowError traceback
    shutil.copytree(tiny_model_dir, made.infinite)
    info = (made.infinite / "cityseg.json").read_text()
    (made.infinite / "cityseg.json").write_text(info.replace('"input_size": [', '"input_size": [Infinity, ', 1))
    made.run = root / "run-with-damaged-checkpoint"
    (made.run / "checkpoints").mkdir(parents=True)
    (made.run / "config.yaml").write_text(f"data:\n  root: {tiny_pairs}\n")
    (made.run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    made.odd_run = root / "run-with-odd-pickle"  # found by fuzzing: torch warned on stderr before the one line
    (made.odd_run / "checkpoints").mkdir(parents=True)
    (made.odd_run / "config.yaml").write_text(f"data:\n  root: {tiny_pairs}\n")
    (made.odd_run / "checkpoints" / "last.ckpt").write_bytes(checkpoint_with_pickle_protocol(25))
    made.bad_yaml = root / "broken.yaml"
    made.bad_yaml.write_text("data: [unclosed\n")
    made.odd_table = root / "odd-table.yaml"  # found by fuzzing: a mapping as ignore_color raised KeyError: 0
    made.odd_table.write_text("classes:\n  - {name: road, id: 7}\nignore_color: {red: 255}\n")
    made.line_break = root / "line-break"  # found by fuzzing: a file name with a control character split the line
    for folder, name in (("images/train", "1.png"), ("labels/train", "1.png"), ("labels/train", "2\r.png")):
        (made.line_break / folder).mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8)).save(made.line_break / folder / name)
    made.binary_yaml = root / "binary.yaml"  # found by fuzzing: not UTF-8 gave a UnicodeDecodeError traceback
    made.binary_yaml.write_bytes(b"\x80\xffdata:\n  size: 256\n")
    made.photo_overclaiming = root / "overclaiming-photo.png"  # a header's 36 megapixels in 70 bytes
    png_claiming(made.photo_overclaiming, 6_000, 6_000)
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
    ("label-config-not-utf8", lambda b: ["label", str(b.pairs), "--config", str(b.binary_yaml)], "binary.yaml"),
    ("synth-unwritable", lambda b: ["synth", str(b.blocker / "scenes"), "--count", "2"], "a-regular-file"),
    ("train-missing", lambda b: ["train", str(b.missing)], "nothing-here"),
    ("train-empty-folder", lambda b: ["train", str(b.empty)], "empty"),
    ("train-bad-key", lambda b: ["train", str(b.pairs), "--set", "train.nope=1"], "train.nope"),
    ("train-bad-value", lambda b: ["train", str(b.pairs), "--set", "train.max_epochs=abc"], "train.max_epochs"),
    ("train-bad-choice", lambda b: ["train", str(b.pairs), "--set", "optim.loss=focal"], "optim.loss"),
    ("train-bad-yaml", lambda b: ["train", str(b.pairs), "--config", str(b.bad_yaml)], "broken.yaml"),
    ("train-config-not-utf8", lambda b: ["train", str(b.pairs), "--config", str(b.binary_yaml)], "binary.yaml"),
    ("train-class-table-not-utf8", lambda b: ["train", str(b.pairs), "--classes", str(b.binary_yaml)], "binary.yaml"),
    ("train-class-table-odd-ignore-color", lambda b: ["train", str(b.pairs), "--classes", str(b.odd_table)],
     "odd-table.yaml"),
    ("train-file-name-with-a-line-break", lambda b: ["train", str(b.line_break)], "2\\x0d.png"),
    ("train-damaged-checkpoint", lambda b: ["train", "--resume", str(b.run)], "last.ckpt"),
    ("train-checkpoint-with-odd-pickle", lambda b: ["train", "--resume", str(b.odd_run)], "last.ckpt"),
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
    ("predict-header-claims-more-than-the-file-holds",
     lambda b: ["predict", str(b.model), str(b.photo_overclaiming), "--out", str(b.root / "p10")],
     "overclaiming-photo.png"),
    ("predict-model-with-infinite-size",
     lambda b: ["predict", str(b.infinite), str(b.photo), "--out", str(b.root / "p11")], "cityseg.json"),
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


RUN_SETTINGS = ("--workers", "--threads", "--backend")  # flags that choose how a command runs, not what it reads


def at_defaults(argv: list[str]) -> list[str]:
    """``argv`` without the flags of :data:`RUN_SETTINGS` and their values: the command as a user runs it."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in RUN_SETTINGS:
            skip = True
        else:
            kept.append(arg)
    return kept


class Placeholders:
    """Stands in for the bad inputs where only the shape of a case's argv matters."""

    def __getattr__(self, name: str) -> Path:
        return Path(name)


def sets_how_it_runs(argv) -> bool:
    return bool(set(argv(Placeholders())) & set(RUN_SETTINGS))


def matrix() -> list:
    """Every case, and each one that sets how its command runs again at the command's defaults."""
    params = []
    for name, argv, names in CASES:
        params.append(pytest.param(argv, names, id=name))
        if sets_how_it_runs(argv):
            params.append(pytest.param(lambda b, argv=argv: at_defaults(argv(b)), names, id=f"{name}-at-defaults"))
    return params


@pytest.mark.parametrize(("argv", "names"), matrix())
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


def test_every_case_that_sets_how_a_command_runs_also_runs_at_the_defaults():
    ids = {param.id for param in matrix()}
    tuned = [name for name, argv, _ in CASES if sets_how_it_runs(argv)]
    assert "label-zero-byte" in tuned
    assert {f"{name}-at-defaults" for name in tuned} <= ids
