"""ImageNet encoder weights from the local Hugging Face cache alone, looked up call by call.

smp and timm fetch ImageNet weights with ``hf_hub_download``, which has no offline switch of its own for one
call: even with ``local_files_only`` it asks the Hub for a list of agents once per process. Offline, cityseg
looks the same files up with the Hub's own cache lookup, ``try_to_load_from_cache`` (files only, no request),
instead of switching the whole process (every thread) to the Hub's offline mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

SMP_WEIGHTS_FILES = ("config.json", "model.safetensors")  # what smp fetches for an encoder, in order; the last loads
TIMM_WEIGHTS_FILE = "pytorch_model.bin"  # timm's default file name on the Hub (HF_WEIGHTS_NAME)


@dataclass(frozen=True)
class CachedWeights:
    """ImageNet encoder weights found in the local Hub cache.

    Args:
        path: the cached file.
        timm: True when timm builds the encoder and loads the file itself (``pretrained_cfg_overlay``);
            False for smp's own encoders, whose encoder takes the file's state dict.
    """

    path: str
    timm: bool

    @property
    def timm_overlay(self) -> dict[str, object]:
        """timm's ``pretrained_cfg_overlay`` that loads the file as timm loads a Hub download.

        A Hub download is read as a plain state dict even where the cfg names a loader of its own (``custom_load``,
        for the original ``.npz`` files); a file is not, unless told.
        """
        return {"file": self.path, "custom_load": False}


def cached_imagenet_weights(encoder: str) -> CachedWeights | None:
    """Where the local Hub cache holds the ImageNet weights that smp or timm would download for ``encoder``.

    Args:
        encoder: an smp encoder name (``resnet34``, ``timm-regnetx_002``, ``tu-<timm name>`` ...).

    Returns:
        The cached file, or None when building the encoder with ImageNet weights reads no Hub file (no such
        weights, or timm takes them from elsewhere): smp or timm then builds it, or says what is wrong, as usual.

    Raises:
        huggingface_hub.errors.LocalEntryNotFoundError: the weights are not in the local cache.
    """
    timm_name = _timm_model(encoder)
    if timm_name is not None:
        return _timm_weights(timm_name)
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders[encoder]["pretrained_settings"].get("imagenet")
    if settings is None:
        return None
    path = ""
    for filename in SMP_WEIGHTS_FILES:
        path = _cached(settings["repo_id"], filename, settings["revision"])
    return CachedWeights(path, timm=False)


def _timm_model(encoder: str) -> str | None:
    """The timm model name smp builds ``encoder`` from (its ``timm-`` aliases included), or None for smp's own."""
    from segmentation_models_pytorch.encoders import is_equivalent_to_timm_universal

    if is_equivalent_to_timm_universal(encoder):  # smp's renaming of its timm- aliases, as get_encoder does it
        encoder = encoder.replace("timm-", "tu-")
        if "mobilenetv3" in encoder:
            encoder = encoder.replace("tu-", "tu-tf_")
    return encoder[3:] if encoder.startswith("tu-") else None


def _timm_weights(model_name: str) -> CachedWeights | None:
    """The cached file timm's ``load_state_dict_from_hf`` would read: a safetensors alternative first."""
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:  # an unknown pretrained tag: timm names it when the network is built
        return None
    if cfg is None or not cfg.hf_hub_id or cfg.source or cfg.file or cfg.state_dict:
        return None  # no Hub weights, or a source of the cfg's own (timm's registry sets none of these)
    repo, _, revision = cfg.hf_hub_id.partition("@")
    filename = cfg.hf_hub_filename or TIMM_WEIGHTS_FILE
    candidates = [filename] if filename.endswith(".safetensors") else [*_safe_alternatives(filename), filename]
    for candidate in candidates[:-1]:
        with contextlib.suppress(LocalEntryNotFoundError):  # as timm: no safetensors file, then the .bin
            return CachedWeights(_cached(repo, candidate, revision or None), timm=True)
    return CachedWeights(_cached(repo, candidates[-1], revision or None), timm=True)


def _safe_alternatives(filename: str) -> list[str]:
    """timm's safetensors names for a ``.bin`` file (``pytorch_model.bin`` -> ``model.safetensors``)."""
    if filename == TIMM_WEIGHTS_FILE:
        return ["model.safetensors"]
    if filename == "open_clip_pytorch_model.bin":
        return ["open_clip_model.safetensors"]
    return [filename[:-4] + ".safetensors"] if filename.endswith(".bin") else []


def _cached(repo: str, filename: str, revision: str | None) -> str:
    """The cached file's path, as ``hf_hub_download(..., local_files_only=True)`` finds it, without its request."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    path = try_to_load_from_cache(repo, filename, revision=revision)
    if not isinstance(path, str):  # None (never fetched) or the cache's note that the Hub has no such file
        raise LocalEntryNotFoundError(f"{repo}/{filename} ({revision or 'main'}) is not in the local Hub cache")
    return path
