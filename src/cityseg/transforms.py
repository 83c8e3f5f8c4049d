"""Photo-and-mask transforms for training and evaluation, built on torchvision.transforms.v2.

A photo and its label mask travel together as ``tv_tensors.Image`` and ``tv_tensors.Mask``, so every
geometric step (rescale, crop, flip) moves both the same way, while v2 resizes masks with nearest-neighbour
(class indices never blend) and colour jitter touches the photo only. Pixels a crop pads in get
:data:`~cityseg.classes.IGNORE_INDEX` in the mask, so they count in neither loss nor metrics.

Two presets, as in torchvision's segmentation references:

* :func:`train_transform`: random rescale (``augment.scale`` times the training size), a random crop
  (``augment.crop``, default the training size; padded if needed), horizontal flip, colour jitter, then
  normalise; with augmentation off (the original project) only a resize to the training size. Crops
  smaller than the training size train on full-resolution detail at a fraction of the cost per step,
  since the network is fully convolutional and still predicts whole images at the training size.
* :func:`eval_transform`: resize the photo to the training size and normalise; the mask keeps its own
  resolution, so metrics are measured on the labels as they are, whatever size the model runs at.

Example:
    >>> transform = train_transform((128, 128), AugmentConfig(), mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> image, mask = transform(photo, labels)  # (H, W, 3) uint8, (H, W) uint8  # doctest: +SKIP
    >>> image.shape, image.dtype, mask.shape, mask.dtype  # doctest: +SKIP
    (torch.Size([3, 128, 128]), torch.float32, torch.Size([128, 128]), torch.int64)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from cityseg.classes import IGNORE_INDEX
from cityseg.config import AugmentConfig


class PairTransform:
    """Apply a v2 pipeline to a photo and its mask together, returning model-ready tensors.

    Args:
        pipeline: transforms applied to ``(Image, Mask)`` together.
        photo_only: transforms applied first, to the photo alone (e.g. the evaluation resize).

    Call with ``photo`` (H, W, 3) uint8 and ``mask`` (H, W) uint8 class indices; returns ``image``
    (3, h, w) float32 normalised and ``mask`` (h', w') int64. Plain objects all the way down, so a
    transform pickles into DataLoader worker processes.
    """

    def __init__(self, pipeline: v2.Transform, photo_only: v2.Transform | None = None):
        self.pipeline = pipeline
        self.photo_only = photo_only

    def __call__(self, photo: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1))  # (3, H, W) uint8
        target = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask)))  # (H, W) uint8
        if self.photo_only is not None:
            image = self.photo_only(image)
        image, target = self.pipeline(image, target)
        return image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor).long()

    def __repr__(self) -> str:
        return f"PairTransform(pipeline={self.pipeline!r}, photo_only={self.photo_only!r})"


def _to_model_input(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    """uint8 photo -> float in [0, 1] -> normalised; the mask becomes int64 untouched (scale applies to images only)."""
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def whole_photo_transform(
    size: tuple[int, int], augment: AugmentConfig, mean: Sequence[float], std: Sequence[float]
) -> PairTransform:
    """:func:`train_transform` on whole photos at ``size``: no rescale or crop, flips and colour jitter kept.

    A run's last ``augment.final_epochs`` train on these, the view the network is validated and tested on.
    """
    return train_transform(size, dataclasses.replace(augment, scale=(1.0, 1.0), crop=(0, 0)), mean, std)


def train_transform(
    size: tuple[int, int], augment: AugmentConfig, mean: Sequence[float], std: Sequence[float]
) -> PairTransform:
    """The training preset: augmentation per ``augment`` (or a plain resize when it is disabled), then normalise.

    Args:
        size: (height, width) of the tensors the model trains on.
        augment: which augmentations run and how strongly.
        mean, std: per-channel normalisation of photos scaled to [0, 1] (the encoder's, e.g. ImageNet's).

    Returns:
        A :class:`PairTransform` giving image (3, *crop) float32 and mask (*crop) int64 (``crop`` is
        ``augment.crop``, or ``size`` when that is (0, 0) or augmentation is off).
    """
    size = (int(size[0]), int(size[1]))
    if not augment.enabled:
        steps: list[v2.Transform] = [v2.Resize(size, antialias=True)]
    else:
        low, high = augment.scale
        crop = (int(augment.crop[0]), int(augment.crop[1])) if min(augment.crop) > 0 else size
        steps = [
            # rescale so the photo fits `size` times a random factor, then cut a `crop` window out of it;
            # a border the rescaled photo does not cover is padded with IGNORE_INDEX, so it counts nowhere
            # ScaleJitter's target_size is (width, height), unlike every other size here: a non-square size
            # such as the release's (1024, 2048) would otherwise halve 2048x1024 photos before the jitter
            v2.ScaleJitter(target_size=(size[1], size[0]), scale_range=(float(low), float(high)), antialias=True),
            v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        ]
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if augment.color_jitter > 0:
            strength = float(augment.color_jitter)
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    return PairTransform(v2.Compose(steps + _to_model_input(mean, std)))


def eval_transform(size: tuple[int, int], mean: Sequence[float], std: Sequence[float]) -> PairTransform:
    """The evaluation preset: the photo is resized to ``size`` and normalised; the mask keeps its resolution.

    The model's logits are upsampled to the mask's size before scoring, so metrics do not depend on the
    training resolution (and no label is ever interpolated).

    Returns:
        A :class:`PairTransform` giving image (3, *size) float32 and mask (H, W) int64 at the label's own size.
    """
    size = (int(size[0]), int(size[1]))
    return PairTransform(
        v2.Compose(_to_model_input(mean, std)),
        photo_only=v2.Resize(size, antialias=True),
    )
