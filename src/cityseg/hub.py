"""Models on the Hugging Face Hub: fetch one into the Hub's cache (then it works offline), and list the cached ones.

A Hub repository is a model cityseg can run when it holds safetensors weights and the smp config beside them:

* **a cityseg model folder** (what ``cityseg push`` uploads): ``config.json``, ``model.safetensors``,
  ``cityseg.json`` and the model card; used as it is;
* **a segmentation-models-pytorch checkpoint** (``smp.from_pretrained``'s layout, e.g. ``smp-hub/segformer-b0-
  768x768-city-160k``): ``config.json``, ``model.safetensors`` and ``albumentations_config_eval.json`` (the
  normalisation and input size). It names no classes: the Cityscapes ones (19 outputs, ``city`` in the name)
  are ``train19``; any other takes its classes from ``--classes``. cityseg writes the ``cityseg.json`` it lacks
  into a folder of its own (:func:`cityseg_home`), beside links to the cached files, never into the Hub's cache.

Only safetensors, JSON, YAML, Markdown and ONNX files are downloaded (:data:`HUB_FILES`): a repository with
pickled weights only is refused, and nothing from a repository is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from cityseg.errors import CitysegError
from cityseg.run_folders import INFO_FILE

HUB_FILES = ["*.json", "*.safetensors", "*.onnx", "*.md", "*.yaml"]  # what is fetched: data, never code or pickles
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SMP_CONFIG, SMP_WEIGHTS = "config.json", "model.safetensors"
SMP_EVAL_TRANSFORM = "albumentations_config_eval.json"  # smp's record of the evaluation preprocessing
FALLBACK_INPUT_SIZE = (512, 1024)  # (h, w) for a checkpoint that records no size: half Cityscapes resolution
CITYSCAPES_NAME = re.compile(r"city", re.IGNORECASE)  # smp-hub's Cityscapes checkpoints say so in their name
FETCH_HINT = (
    "on a connected machine run `hf download {repo}` (or any cityseg command with it); the cache then works offline"
)


def cityseg_home() -> Path:
    """cityseg's own cache folder: ``$CITYSEG_HOME``, else ``$XDG_CACHE_HOME/cityseg``, else ``~/.cache/cityseg``."""
    if os.environ.get("CITYSEG_HOME"):
        return Path(os.environ["CITYSEG_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cityseg"


def fetch_model(repo_id: str, revision: str | None = None, classes: str | None = None) -> Path:
    """A model folder for the Hub repository ``repo_id`` at ``revision``, downloaded once, then from the cache.

    Args:
        repo_id: ``owner/name``.
        revision: a branch, tag or commit; None: ``main``.
        classes: for a segmentation-models-pytorch checkpoint, the class set (``train19`` ...) or class-table
            file of its outputs; None: ``train19`` for a Cityscapes checkpoint, else an error asking for it.

    Raises:
        CitysegError: no such repository (or private without a token), no such revision, not cached and the
            Hub unreachable, a repository that holds no safetensors model, or pickled weights only.
    """
    snapshot = _download(repo_id, revision)
    files = sorted(p.name for p in snapshot.iterdir())
    if INFO_FILE in files and SMP_WEIGHTS in files:
        return snapshot
    if SMP_CONFIG in files and SMP_WEIGHTS in files:
        return smp_checkpoint_folder(snapshot, repo_id, classes)
    raise CitysegError(_not_a_model(repo_id, revision, files))


def _download(repo_id: str, revision: str | None) -> Path:
    """``snapshot_download`` of :data:`HUB_FILES`, its errors as one line each."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES))
    except GatedRepoError:
        raise CitysegError(
            f"Hub repository {where} is gated: accept its terms on huggingface.co, then set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise CitysegError(
            f"Hub repository {repo_id} not found: check the name, or for a private repository set HF_TOKEN "
            "(or run `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise CitysegError(
            f"Hub repository {repo_id} has no revision {revision!r}; check the branch, tag or commit"
        ) from None
    except (LocalEntryNotFoundError, IncompleteSnapshotError):
        raise CitysegError(
            f"Hub model {where} is not in the local cache and the Hub cannot be reached (offline, or "
            f"HF_HUB_OFFLINE=1); {FETCH_HINT.format(repo=repo_id)}"
        ) from None
    except HfHubHTTPError as exc:
        raise CitysegError(f"cannot fetch Hub model {where}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise CitysegError(
            f"cannot write Hub model {where} into the Hub cache: {exc}; free some space or set HF_HOME"
        ) from None


def _not_a_model(repo_id: str, revision: str | None, cached: list[str]) -> str:
    """Why a repository is no model cityseg runs: what it holds (on the Hub, else in the cache)."""
    files = _remote_files(repo_id, revision) or cached
    shown = ", ".join(files[:8]) + (f" ... ({len(files)} files)" if len(files) > 8 else "") or "no files"
    if any(name.endswith(PICKLE_SUFFIXES) for name in files) and not any(f.endswith(".safetensors") for f in files):
        return (
            f"Hub repository {repo_id} holds pickled weights only ({shown}); cityseg loads weights from "
            "safetensors alone and never runs a repository's code: ask for a safetensors version"
        )
    return (
        f"Hub repository {repo_id} is not a segmentation model cityseg can run: it holds {shown}; a model has "
        f"{SMP_CONFIG} and {SMP_WEIGHTS} (cityseg or segmentation-models-pytorch layout)"
    )


def _remote_files(repo_id: str, revision: str | None) -> list[str]:
    """The repository's file names on the Hub, or [] offline."""
    from huggingface_hub import HfApi

    try:
        return sorted(HfApi().list_repo_files(repo_id, revision=revision))
    except Exception:  # offline, or any Hub trouble: the cached listing then says what is known
        return []


# ---- segmentation-models-pytorch checkpoints ----------------------------------------------------------


def smp_checkpoint_folder(snapshot: Path, repo_id: str, classes: str | None = None) -> Path:
    """A cityseg model folder for an smp Hub checkpoint: links to its files plus the ``cityseg.json`` it lacks.

    Written under :func:`cityseg_home` (``hub/<owner>--<name>/<commit>-<classes>``), atomically, once.

    Raises:
        CitysegError: no class names to be had, a class set whose size is not the checkpoint's outputs, or an
            unwritable cache folder.
    """
    config = _json(snapshot / SMP_CONFIG, repo_id)
    outputs = int(config.get("classes", 0) or 0)
    class_set = _checkpoint_classes(repo_id, outputs, classes)
    key = class_set.name if class_set.table is None else hashlib.sha256(repr(class_set.table).encode()).hexdigest()[:12]
    folder = cityseg_home() / "hub" / repo_id.replace("/", "--") / f"{snapshot.name}-{key}"
    if (folder / INFO_FILE).is_file():
        return folder
    info = _checkpoint_info(snapshot, repo_id, config, class_set)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
        for file in snapshot.iterdir():
            (tmp / file.name).symlink_to(file.resolve())
        (tmp / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        os.replace(tmp, folder)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if (folder / INFO_FILE).is_file():  # another process wrote it first
            return folder
        raise CitysegError(
            f"cannot write {folder}: {exc}; set CITYSEG_HOME to a writable folder (cityseg's cache)"
        ) from None
    return folder


def _checkpoint_classes(repo_id: str, outputs: int, classes: str | None):
    """The ClassSet of a checkpoint's ``outputs`` channels: ``classes`` if given, else Cityscapes' by its name."""
    from cityseg.classes import class_set

    if classes is None:
        if outputs == 19 and CITYSCAPES_NAME.search(repo_id):
            classes = "train19"
        else:
            raise CitysegError(
                f"Hub model {repo_id} is a segmentation-models-pytorch checkpoint with {outputs} classes that does "
                "not name them; pass --classes (train19, categories, labelids or a class table file)"
            )
    chosen = class_set(classes)
    if len(chosen.names) != outputs:
        raise CitysegError(
            f"--classes {classes} has {len(chosen.names)} classes but Hub model {repo_id} outputs {outputs}; "
            "pass the class set it was trained on"
        )
    return chosen


def _checkpoint_info(snapshot: Path, repo_id: str, config: dict, classes):
    """The ModelInfo of an smp checkpoint: architecture, encoder, classes, and its evaluation preprocessing."""
    from cityseg.models import ModelInfo

    size, mean, std = eval_preprocessing(snapshot / SMP_EVAL_TRANSFORM, repo_id)
    model_class = str(config.get("_model_class", ""))
    return ModelInfo.from_class_set(
        model_class.lower() or "unknown",
        str(config.get("encoder_name", "unknown")),
        classes,
        size,
        label_method="hub",
        encoder_weights=f"{repo_id}@{snapshot.name}",
        mean=mean,
        std=std,
    )


def eval_preprocessing(path: Path, repo_id: str = "") -> tuple[tuple[int, int], tuple, tuple]:
    """(input size, mean, std) from an albumentations ``Compose`` saved as JSON (``Resize``, ``Normalize``).

    albumentations normalises ``(pixel - mean * max_pixel_value) / (std * max_pixel_value)`` on 0-255 pixels;
    cityseg's mean and std apply to 0-1 pixels, so both are scaled by ``max_pixel_value / 255``. Without a
    file (or a ``Resize``) the size is read from the repository name (``...-768x768-...``), else
    :data:`FALLBACK_INPUT_SIZE`; without ``Normalize``, ImageNet's statistics.
    """
    from cityseg.models.networks import IMAGENET_MEAN, IMAGENET_STD

    size_in_name = re.search(r"(\d{2,4})x(\d{2,4})", repo_id)
    size = (int(size_in_name[1]), int(size_in_name[2])) if size_in_name else FALLBACK_INPUT_SIZE
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    steps = []
    if path.is_file():
        saved = _json(path, repo_id)
        steps = (saved.get("transform") or saved).get("transforms") or []
    for step in steps:
        kind = str(step.get("__class_fullname__", "")).rsplit(".", 1)[-1]
        if kind == "Resize":
            size = (int(step["height"]), int(step["width"]))
        elif kind == "Normalize":
            scale = float(step.get("max_pixel_value", 255.0)) / 255.0
            mean = tuple(float(v) * scale for v in step.get("mean", IMAGENET_MEAN))  # albumentations' defaults too
            std = tuple(float(v) * scale for v in step.get("std", IMAGENET_STD))
    return size, mean, std


def _json(path: Path, repo_id: str) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CitysegError(f"cannot read {path.name} of Hub model {repo_id}: {exc}") from None
    if not isinstance(values, dict):
        raise CitysegError(f"{path.name} of Hub model {repo_id} is not a JSON object")
    return values


# ---- the models in the local cache --------------------------------------------------------------------


def cached_models() -> list[tuple[str, Path, int]]:
    """``(repo_id@revision, snapshot folder, bytes on disk)`` of every Hub model in the local cache cityseg can run."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound, CorruptedCacheException

    try:
        cache = scan_cache_dir()
    except (CacheNotFound, CorruptedCacheException, OSError):
        return []
    found = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            files = {file.file_name for file in revision.files}
            if SMP_WEIGHTS in files and (INFO_FILE in files or SMP_CONFIG in files):
                refs = sorted(revision.refs) or [revision.commit_hash[:12]]
                found.append((f"{repo.repo_id}@{refs[0]}", Path(revision.snapshot_path), revision.size_on_disk))
    return found
