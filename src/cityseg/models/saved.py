"""A saved model: smp's files plus ``cityseg.json`` (:class:`ModelInfo`), written atomically, read offline."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityseg.classes import CLASS_SETS, IGNORE_INDEX, NUM_LABEL_IDS, ClassSet, class_set
from cityseg.errors import CitysegError
from cityseg.files import disk_full_message
from cityseg.model_card import facts_from_info, render_card
from cityseg.models.networks import IMAGENET_MEAN, IMAGENET_STD, input_normalization, unwrap_network
from cityseg.run_folders import INFO_FILE  # the ModelInfo file: one name for every module

if TYPE_CHECKING:  # torch is imported inside functions so `import cityseg.models` stays light
    from torch import nn

CONFIG_FILE = "config.json"  # smp's architecture config (save_pretrained)
WEIGHTS_FILE = "model.safetensors"  # smp's weights (save_pretrained)
METRICS_FILE = "metrics.json"  # the metrics passed to save_model, if any
CARD_FILE = "README.md"  # the model card (cityseg.model_card), in the Hub's format
HEAD_PREFIX = "segmentation_head."  # smp's last layer: the one fine-tuning on other classes starts afresh
# ModelInfo fields whose cityseg.json key differs: the file keeps the key that model folders have always had,
# so old folders load and old code reads new ones
_FILE_KEYS = {"class_set_name": "class_set"}


@dataclass
class ModelInfo:
    """Everything besides the weights that prediction needs, saved as ``cityseg.json`` beside them.

    Args:
        arch, encoder: the smp architecture and encoder names.
        class_set_name: name of the class set (``train19``, ``categories``, ``labelids``, ``kmeans``);
            :attr:`classes` is the ClassSet itself. ``cityseg.json`` stores it as ``class_set``.
        names, colors: class names and RGB colours, index ``i`` is class ``i``.
        class_to_id: official label id written for each class.
        input_size: (height, width) the model was trained on.
        mean, std: per-channel normalisation of [0, 1] RGB input.
        label_method: how training masks were labelled (``palette`` / ``kmeans``).
        encoder_weights: what filled the encoder before training (``imagenet``, ``none``, a path ...).
        class_table: a user's class table (:mod:`cityseg.user_classes`), kept whole so the model folder alone
            rebuilds its classes; None for the built-in sets. The folder holds it as ``classes.yaml`` too.

    Example:
        >>> info = ModelInfo.from_class_set("unet", "resnet34", class_set("train19"), (256, 256))
        >>> info.num_classes
        19
    """

    arch: str
    encoder: str
    class_set_name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    class_to_id: tuple[int, ...]
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_method: str = "palette"
    encoder_weights: str = "none"
    class_table: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def from_class_set(
        cls,
        arch: str,
        encoder: str,
        classes: ClassSet,
        input_size: tuple[int, int],
        label_method: str = "palette",
        encoder_weights: str = "none",
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> ModelInfo:
        """Fill names, colours and ids from a ClassSet; mean/std default to what the encoder expects."""
        default_mean, default_std = input_normalization(encoder)
        return cls(
            arch=arch,
            encoder=encoder,
            class_set_name=classes.name,
            names=tuple(classes.names),
            colors=tuple(tuple(int(c) for c in color) for color in classes.colors),
            class_to_id=tuple(int(i) for i in classes.class_to_id),
            input_size=(int(input_size[0]), int(input_size[1])),
            mean=tuple(mean or default_mean),
            std=tuple(std or default_std),
            label_method=label_method,
            encoder_weights=encoder_weights,
            class_table=classes.table,
        )

    @property
    def classes(self) -> ClassSet:
        """The ClassSet the model predicts (for colorize, to_label_ids ...), built anew on each access."""
        import numpy as np

        if self.class_table:
            return class_set(self.class_table)
        if self.class_set_name in CLASS_SETS:
            official = class_set(self.class_set_name)
            if official.names == self.names:
                return official
        # a fitted (kmeans) or custom set: official ids map back to the first class written as that id
        table = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
        for index, label_id in reversed(list(enumerate(self.class_to_id))):
            if 0 <= label_id < NUM_LABEL_IDS:
                table[label_id] = index
        return ClassSet(
            name=self.class_set_name,
            names=tuple(self.names),
            colors=tuple(tuple(c) for c in self.colors),
            id_to_class=table,
            class_to_id=tuple(self.class_to_id),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``cityseg.json`` object: the fields in order, under their file keys (:data:`_FILE_KEYS`)."""
        values = json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, JSON-ready
        return {_FILE_KEYS.get(name, name): value for name, value in values.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = INFO_FILE) -> ModelInfo:
        """Read a ``cityseg.json`` object (see :meth:`to_dict`); missing optional keys take their defaults."""
        fields = {_FILE_KEYS.get(f.name, f.name): f for f in dataclasses.fields(cls)}
        required = [key for key, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [key for key in required if key not in values]
        if missing:
            raise CitysegError(f"{source} lacks {', '.join(missing)}; save the model again with cityseg")
        try:
            return cls(
                arch=str(values["arch"]),
                encoder=str(values["encoder"]),
                class_set_name=str(values["class_set"]),
                names=tuple(str(n) for n in values["names"]),
                colors=tuple(tuple(int(c) for c in color) for color in values["colors"]),
                class_to_id=tuple(int(i) for i in values["class_to_id"]),
                input_size=tuple(int(v) for v in values.get("input_size", (256, 256))),
                mean=tuple(float(v) for v in values.get("mean", IMAGENET_MEAN)),
                std=tuple(float(v) for v in values.get("std", IMAGENET_STD)),
                label_method=str(values.get("label_method", "palette")),
                encoder_weights=str(values.get("encoder_weights", "none")),
                class_table=_class_table(values.get("class_table"), source),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an infinite size (found by fuzzing)
            raise CitysegError(f"{source} has a malformed value ({exc}); save the model again with cityseg") from None


def _class_table(table: Any, source: str) -> dict | None:
    """A saved class table, checked as a table file is (a damaged one is named now, not at first use)."""
    if table is None:
        return None
    from cityseg.user_classes import normalize_table

    try:
        return normalize_table(table, f"{source} (class_table)")
    except CitysegError as exc:
        raise CitysegError(f"{exc}; save the model again with cityseg") from None


# ---- saving and loading -----------------------------------------------------------------------


def save_model(
    net: nn.Module, folder: str | os.PathLike, info: ModelInfo, metrics: dict | None = None, card: str | None = None
) -> Path:
    """Write a model folder: smp ``save_pretrained`` files, ``cityseg.json``, the model card ``README.md`` and
    (if given) ``metrics.json``.

    The folder is written under a temporary name beside ``folder`` and renamed into place, so readers
    never see a half-written model. The saved smp config says ``encoder_weights: null`` so reloading it
    (here or with ``smp.from_pretrained``) never downloads encoder weights: the trained ones are in the file.

    Args:
        net: an smp model (also unwrapped from DDP / torch.compile).
        folder: the model folder to create or replace.
        info: what the model predicts and how to feed it.
        metrics: JSON-ready metrics, shown in the README model card.
        card: the model card's text (:mod:`cityseg.model_card`); None: one made from ``info`` and ``metrics``.

    Returns:
        The folder.
    """
    model = unwrap_network(net)
    if not hasattr(model, "save_pretrained") or not isinstance(getattr(model, "config", None), dict):
        raise CitysegError(
            f"cannot save a {type(model).__name__}: save_model expects a segmentation-models-pytorch model"
        )
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder should be as readable as any other
    metrics = _json_ready(metrics) if metrics is not None else None
    config = model.config
    original_weights = config.get("encoder_weights")
    try:
        config["encoder_weights"] = None  # the trained encoder is in model.safetensors; never fetch it again
        try:
            model.save_pretrained(tmp)
        finally:
            config["encoder_weights"] = original_weights
        if card is None:
            parameters = sum(p.numel() for p in model.parameters())
            card = render_card(facts_from_info(info, folder.name, parameters=parameters), metrics)
        (tmp / CARD_FILE).write_text(card)
        (tmp / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        if info.class_table:  # the user's table, readable and reusable (--classes MODEL/classes.yaml)
            from cityseg.user_classes import TABLE_FILE, table_yaml

            (tmp / TABLE_FILE).write_text(table_yaml(info.classes))
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        _replace_dir(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:  # the previous model folder, if any, is still there
            needed = sum(p.numel() * p.element_size() for p in model.state_dict().values())
            raise CitysegError(disk_full_message(folder, needed)) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _json_ready(value: Any) -> Any:
    """Metrics as plain JSON: NaN/inf become null, tensors and numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays/scalars, tensors
        return _json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.replace(target, old / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / target.name, target)  # put the previous model back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def load_model(folder: str | os.PathLike) -> tuple[nn.Module, ModelInfo]:
    """Rebuild a model saved by :func:`save_model`, offline, in eval mode.

    The weights may be stored in any float precision (the built-in model's are fp16): they load into the
    network's fp32 parameters.

    Args:
        folder: the model folder (``config.json``, ``model.safetensors``, ``cityseg.json``).

    Returns:
        (network in eval mode, its ModelInfo; ``info.encoder_weights`` says what filled the encoder before training).

    Raises:
        CitysegError: the folder or a file in it is missing, unreadable or does not match the others.

    Example:
        >>> net, info = load_model("runs/latest/model")  # doctest: +SKIP
        >>> info.names[:2]  # doctest: +SKIP
        ('road', 'sidewalk')
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CitysegError(
            f"model folder {folder} not found; pass a folder written by cityseg train (runs/<run>/model)"
        )
    info = ModelInfo.from_dict(_read_json(folder / INFO_FILE), source=str(folder / INFO_FILE))
    net = _network_from_config(folder)
    state = _read_weights(folder)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CitysegError(
            f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE}: {_first_problem(exc)}"
        ) from None
    net.eval()
    return net, info


def network_from_model(
    folder: str | os.PathLike, class_names: tuple[str, ...], load_weights: bool = True, classes: ClassSet | None = None
) -> tuple[nn.Module, bool]:
    """A trained model's whole network, to fine-tune on ``class_names``: (network in training mode, head kept).

    The architecture comes from the folder's ``config.json``. With the model's own classes every weight is
    loaded; with other classes (other names, or another number) every layer but the last (smp's
    ``segmentation_head``) is, and the head is sized for ``class_names``: afresh, or, when both the model's
    classes and ``classes`` are built-in Cityscapes sets (train19 to the 7 categories, say), each new class's
    row is the mean of the rows of the model's classes whose label ids it takes (:func:`mapped_head_rows`).
    ``load_weights=False`` returns the architecture untrained.

    Raises:
        CitysegError: the folder's files are missing, damaged or do not fit each other.
    """
    folder = Path(folder)
    info = ModelInfo.from_dict(_read_json(folder / INFO_FILE), source=str(folder / INFO_FILE))
    keep_head = tuple(info.names) == tuple(class_names)
    net = _network_from_config(folder, num_classes=len(class_names))
    if not load_weights:
        return net.train(), keep_head
    state = _read_weights(folder)
    if not keep_head:
        members = mapped_head_rows(info.classes, classes) if classes is not None else None
        head = {key: value for key, value in state.items() if key.startswith(HEAD_PREFIX)}
        state = {key: value for key, value in state.items() if not key.startswith(HEAD_PREFIX)}
        if members:
            state.update(_mapped_head(head, net.state_dict(), members))
    try:
        missing, unexpected = net.load_state_dict(state, strict=keep_head)
    except RuntimeError as exc:
        raise CitysegError(
            f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE}: {_first_problem(exc)}"
        ) from None
    stray = [key for key in (*missing, *unexpected) if not key.startswith(HEAD_PREFIX)]
    if stray:
        raise CitysegError(f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE}: {', '.join(stray[:3])}")
    return net.train(), keep_head


def mapped_head_rows(model_classes: ClassSet, classes: ClassSet) -> list[list[int]] | None:
    """For each class of ``classes``, the model's classes it starts from: those whose Cityscapes label ids it takes
    where both are built-in sets; where either is a table (a user's, an export's class list), whose ids are its
    own, the model's class of the same name (``car``, ``traffic light`` = ``traffic_light``). None when no class
    of one is a class of the other."""
    import numpy as np

    if model_classes.table is not None or classes.table is not None:
        index = {_name_key(name): k for k, name in enumerate(model_classes.names)}
        members = [[index[_name_key(name)]] if _name_key(name) in index else [] for name in classes.names]
        return members if any(members) else None
    ids = np.asarray(model_classes.class_to_id)
    taken = classes.from_label_ids(np.clip(ids, 0, 255).astype(np.uint8))  # per model class: a class, or ignored
    taken = np.where((ids >= 0) & (ids < 256), taken, 255)
    members = [[k for k in range(model_classes.num_classes) if taken[k] == c] for c in range(classes.num_classes)]
    return members if any(members) else None


def _name_key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _mapped_head(trained: dict, fresh: dict, members: list[list[int]]) -> dict:
    """The new head's tensors: a new class's row is the mean of its members' trained rows (weights and bias);
    a class without members keeps its fresh initialisation."""
    head = {}
    for key, value in fresh.items():
        if not key.startswith(HEAD_PREFIX) or key not in trained:
            continue
        rows = value.detach().clone()
        for new_class, old_classes in enumerate(members):
            if old_classes:
                rows[new_class] = trained[key][old_classes].float().mean(dim=0).to(rows.dtype)
        head[key] = rows
    return head


def _network_from_config(folder: Path, num_classes: int | None = None) -> nn.Module:
    """The smp network ``config.json`` describes (``_model_class`` and its arguments), untrained, fetching nothing."""
    import segmentation_models_pytorch as smp
    import torch

    config = _read_json(folder / CONFIG_FILE)
    class_name = config.pop("_model_class", None)
    model_class = getattr(smp, str(class_name), None)
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        raise CitysegError(f"{folder / CONFIG_FILE} names no segmentation-models-pytorch model ({class_name!r})")
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config["encoder_weights"] = None  # weights come from model.safetensors: smp and timm fetch nothing
    if num_classes is not None:
        config["classes"] = num_classes
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return model_class(**config)
    except Exception as exc:
        raise CitysegError(f"cannot rebuild the model from {folder / CONFIG_FILE}: {exc}") from None


def _read_weights(folder: Path) -> dict:
    """The folder's safetensors state dict (CPU tensors); nothing else is ever read as weights."""
    from safetensors.torch import load_file

    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CitysegError(f"{weights_path} not found; the model folder is incomplete, save or train it again")
    try:
        return load_file(weights_path, device="cpu")
    except Exception as exc:
        raise CitysegError(f"cannot read {weights_path}: {exc}; the file is damaged, save or train it again") from None


def _first_problem(exc: Exception) -> str:
    """The first line of load_state_dict's report that names a key."""
    lines = str(exc).splitlines()
    return lines[1].strip() if len(lines) > 1 else str(exc)


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise CitysegError(f"{path} not found; the model folder is incomplete, save or train it again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CitysegError(f"cannot read {path}: {exc}; the file is damaged, save or train it again") from None
    if not isinstance(values, dict):
        raise CitysegError(f"{path} is not a JSON object; the file is damaged, save or train it again")
    return values
