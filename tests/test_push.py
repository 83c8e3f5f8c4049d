"""``cityseg push``: the files and card a push uploads, written to a folder or handed to the Hub's API (faked)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cityseg.errors import CitysegError


@pytest.fixture
def no_token(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)


def test_to_folder_writes_a_model_that_loads_back_with_identical_weights(tiny_model_dir, tmp_path, no_token):
    from huggingface_hub import ModelCard
    from safetensors.numpy import load_file

    from cityseg.engine import Segmenter
    from cityseg.push import PushOptions, push_model

    result = push_model(tiny_model_dir, "someone/tiny-streets", PushOptions(to_folder=tmp_path / "upload"))
    folder = tmp_path / "upload"
    assert result.destination == str(folder) and sorted(result.files) == sorted(p.name for p in folder.iterdir())
    assert {"config.json", "model.safetensors", "cityseg.json", "README.md"} <= set(result.files)
    saved, pushed = load_file(tiny_model_dir / "model.safetensors"), load_file(folder / "model.safetensors")
    assert saved.keys() == pushed.keys() and all(np.array_equal(saved[k], pushed[k]) for k in saved)
    photo = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ours, theirs = Segmenter.from_pretrained(tiny_model_dir), Segmenter.from_pretrained(folder)
    assert np.array_equal(ours.predict(photo), theirs.predict(photo))
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "segmentation-models-pytorch" and card.data.pipeline_tag == "image-segmentation"
    assert "cityseg" in card.data.tags and card.data.license == "other"
    assert 'from_pretrained("someone/tiny-streets")' in card.text


def test_a_run_pushed_carries_its_held_out_figures(trained_run, tmp_path, no_token):
    import json

    from huggingface_hub import ModelCard

    from cityseg.push import PushOptions, push_model

    push_model(trained_run, "someone/run", PushOptions(to_folder=tmp_path / "upload"))
    card = ModelCard.load(tmp_path / "upload" / "README.md")
    metrics = json.loads((trained_run / "metrics.json").read_text())
    [result] = [r for r in card.data.eval_results if r.metric_name.startswith("mIoU")]
    assert result.metric_value == pytest.approx(round(100 * metrics["mIoU"], 2))
    assert f"steps: {metrics['steps']}" in card.text and "## Known weak classes" in card.text


def test_push_without_a_token_is_one_line_and_uploads_nothing(tiny_model_dir, no_token, monkeypatch):
    import huggingface_hub

    from cityseg.push import push_model

    monkeypatch.setattr(huggingface_hub, "HfApi", None)  # any use of the API would fail loudly
    with pytest.raises(CitysegError, match=r"needs a Hugging Face token: set HF_TOKEN .*--to-folder"):
        push_model(tiny_model_dir, "someone/tiny")


def test_the_upload_hands_the_staged_folder_and_card_to_the_hub_api(tiny_model_dir, monkeypatch):
    import huggingface_hub

    from cityseg.push import PushOptions, push_model

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)

        def create_branch(self, repo_id, branch, exist_ok=False):
            calls["branch"] = (repo_id, branch)

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
            calls["files"] = {p.name: p.read_bytes() for p in folder_path.iterdir()}
            calls["upload"] = (repo_id, revision, commit_message)
            return type("Commit", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    options = PushOptions(private=True, revision="v1", token="hf_secret")
    result = push_model(tiny_model_dir, "someone/tiny", options)
    assert calls["token"] == "hf_secret" and calls["repo"] == ("someone/tiny", True, True)
    assert calls["branch"] == ("someone/tiny", "v1") and calls["upload"][:2] == ("someone/tiny", "v1")
    assert calls["files"]["model.safetensors"] == (tiny_model_dir / "model.safetensors").read_bytes()
    assert b'from_pretrained("someone/tiny")' in calls["files"]["README.md"]
    assert result.destination == "https://hub.example/someone/tiny/commit/1"


@pytest.mark.parametrize(
    ("repo_id", "message"), [("no-owner", "not a Hub repository id"), ("a/b@main", "not a Hub repository id")]
)
def test_bad_repository_ids_are_refused(tiny_model_dir, repo_id, message, tmp_path):
    from cityseg.push import PushOptions, push_model

    with pytest.raises(CitysegError, match=message):
        push_model(tiny_model_dir, repo_id, PushOptions(to_folder=tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_a_folder_that_is_not_empty_is_left_as_it_was(tiny_model_dir, tmp_path):
    from cityseg.push import PushOptions, push_model

    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(CitysegError, match="is not an empty folder"):
        push_model(tiny_model_dir, "someone/tiny", PushOptions(to_folder=target))
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cityseg-push-")]  # no staging left behind


def test_an_unwritable_folder_is_one_line(tiny_model_dir, tmp_path):
    from cityseg.push import PushOptions, push_model

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CitysegError, match=r"cannot write into .*file"):
        push_model(tiny_model_dir, "someone/tiny", PushOptions(to_folder=blocker / "out"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_pairs, tiny_config_for):
    """A finished tiny run (one epoch), copied so tests may write beside it."""
    from cityseg.training import train

    runs = tmp_path_factory.mktemp("push-runs")
    run = train(tiny_config_for(tiny_pairs, runs, train__max_epochs=1))
    copy = runs / "copy"
    shutil.copytree(run, copy, symlinks=True)
    return copy
