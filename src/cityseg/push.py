"""``cityseg push``: a trained model to the Hugging Face Hub with its model card, or to a folder first.

What is uploaded is the model folder as it is (weights, smp config, ``cityseg.json``, class table, metrics,
ONNX files if exported) with its model card written anew for the repository's name, so the card's
examples load it from the Hub. ``to_folder`` writes exactly those files and uploads nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cityseg.errors import CitysegError
from cityseg.model_sources import locate_model, parse_hub_id
from cityseg.models.saved import CARD_FILE, METRICS_FILE, WEIGHTS_FILE
from cityseg.run_folders import CONFIG_FILE

TOKEN_HINT = "set HF_TOKEN or run `hf auth login`; --to-folder DIR writes the files without uploading"


@dataclass(frozen=True)
class PushOptions:
    """How ``cityseg push`` uploads.

    Args:
        private: create the repository private (an existing one keeps its visibility).
        revision: the branch to upload to (created from ``main`` if new); None: ``main``.
        to_folder: write the files here instead of uploading (a new or empty folder).
        message: the commit message; None: one naming the model.
        token: a Hugging Face token; None: ``HF_TOKEN`` or the one ``hf auth login`` saved.
    """

    private: bool = False
    revision: str | None = None
    to_folder: str | os.PathLike | None = None
    message: str | None = None
    token: str | None = None


@dataclass
class PushResult:
    """What a push did: the files, and where they went (a Hub URL or a folder)."""

    files: list[str] = field(default_factory=list)
    destination: str = ""
    uploaded: bool = True

    def __str__(self) -> str:
        if not self.uploaded:
            return f"wrote {len(self.files)} files ({', '.join(self.files)}) to {self.destination}; nothing uploaded"
        return f"pushed {len(self.files)} files ({', '.join(self.files)}) to {self.destination}"


def push_model(model: str | os.PathLike, repo_id: str, options: PushOptions | None = None) -> PushResult:
    """Upload a run's (or a model folder's) model to the Hub repository ``repo_id`` (see the module).

    Raises:
        CitysegError: no model there, a malformed repository id, no token, a target folder that is not empty,
            or the Hub's refusal (one line).
    """
    options = options or PushOptions()
    if parse_hub_id(repo_id) is None or "@" in repo_id:
        raise CitysegError(f"{repo_id!r} is not a Hub repository id; write owner/name (a branch goes in --revision)")
    source = locate_model(model)
    token = None
    if options.to_folder is None:
        token = options.token or _saved_token()
        if not token:
            raise CitysegError(f"cityseg push needs a Hugging Face token: {TOKEN_HINT}")
    parent = Path(options.to_folder).parent if options.to_folder else None
    stage = _stage(source.folder, source.run, repo_id, parent)
    files = sorted(p.name for p in stage.iterdir())
    if options.to_folder is not None:
        return PushResult(files, str(_move_into(stage, Path(options.to_folder))), uploaded=False)
    try:
        url = _upload(stage, repo_id, options, token)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return PushResult(files, url)


def _saved_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _stage(model_dir: Path, run_dir: Path | None, repo_id: str, parent: Path | None) -> Path:
    """A temporary folder holding what would be uploaded: the model folder's files and a card for ``repo_id``."""
    try:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=parent, prefix=".cityseg-push-"))
    except OSError as exc:
        raise CitysegError(
            f"cannot write into {parent or tempfile.gettempdir()}: {exc}; choose another folder"
        ) from None
    try:
        for file in sorted(model_dir.iterdir()):
            if file.is_file() and not file.name.startswith(".") and file.name != CARD_FILE:
                shutil.copy2(file, stage / file.name)
        (stage / CARD_FILE).write_text(_card(model_dir, run_dir, repo_id))
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise CitysegError(f"cannot copy {model_dir} for the push: {exc}; free some space") from None
    return stage


def _card(model_dir: Path, run_dir: Path | None, repo_id: str) -> str:
    """The model card for ``repo_id``: from the run's recipe and figures, else the folder's own card or info."""
    from cityseg.backends import read_model_info
    from cityseg.model_card import facts_from_info, read_card_metadata, render_card, run_facts

    info = read_model_info(model_dir)
    metrics_file = model_dir / METRICS_FILE
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        from cityseg.config import Config

        config = Config.from_yaml(run_dir / CONFIG_FILE)
        facts = run_facts(run_dir, info, config, metrics or {}, name=repo_id, weights=model_dir / WEIGHTS_FILE)
        return render_card(facts, metrics)
    own = model_dir / CARD_FILE
    text = own.read_text() if own.is_file() else ""
    title = re.search(r"^# (.+)$", text, re.MULTILINE)
    if title and "cityseg" in (read_card_metadata(text).get("tags") or []):
        # a card cityseg wrote (the built-in model's has its speed and recipe): the same card, loading from the Hub
        name = re.escape(title[1].strip())
        return re.sub(rf"(?<![\w/.-]){name}(?![\w/.-])", repo_id, text)
    return render_card(facts_from_info(info, repo_id, weights=model_dir / WEIGHTS_FILE), metrics)


def _move_into(stage: Path, folder: Path) -> Path:
    """Rename the staged files into ``folder`` (new, or an empty folder), so it never holds half of them."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        shutil.rmtree(stage, ignore_errors=True)
        raise CitysegError(f"{folder} exists and is not an empty folder; choose a new folder for --to-folder")
    try:
        if folder.is_dir():
            folder.rmdir()
        os.replace(stage, folder)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise CitysegError(f"cannot write {folder}: {exc}; choose another folder") from None
    folder.chmod(0o755)  # mkdtemp made it private; a model folder is as readable as any other
    return folder


def _upload(stage: Path, repo_id: str, options: PushOptions, token: str) -> str:
    """Create the repository (and branch) if needed and upload the staged folder in one commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=options.private, exist_ok=True)
        if options.revision:
            api.create_branch(repo_id, branch=options.revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=stage,
            revision=options.revision,
            commit_message=options.message or f"cityseg push: {repo_id}",
        )
    except HfHubHTTPError as exc:
        raise CitysegError(f"the Hub refused the push to {repo_id}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # no network (httpx's errors), or the Hub's client giving up: one line either way
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CitysegError(f"cannot push to {repo_id}: {problem}; check the connection and try again") from None
    return str(getattr(commit, "commit_url", "") or f"https://huggingface.co/{repo_id}")
