"""Training and evaluation transforms: photo and mask move together, masks stay class indices."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from cityseg.classes import IGNORE_INDEX
from cityseg.config import AugmentConfig
from cityseg.transforms import eval_transform, train_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def blocky_pair(size: int = 64, classes: int = 5, seed: int = 0, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A mask of square blocks of random classes, and a photo whose red channel encodes the class (40 * class)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, classes, (size // block, size // block))
    mask = np.kron(cells, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
    photo = np.zeros((size, size, 3), dtype=np.uint8)
    photo[..., 0] = mask * 40
    photo[..., 1] = np.arange(size, dtype=np.uint8)[None, :] * 2  # a left-right gradient, to see flips
    return photo, mask


def red_class(image: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation and read the class back from the red channel."""
    red = image[0] * STD[0] + MEAN[0]  # [0, 1]
    return torch.round(red * 255 / 40).long()


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_moves_photo_and_mask_together(seed):
    photo, mask = blocky_pair(size=128, block=16)
    transform = train_transform((96, 80), AugmentConfig(scale=(0.6, 1.8), color_jitter=0.0), MEAN, STD)
    torch.manual_seed(seed)
    image, target = transform(photo, mask)
    assert image.shape == (3, 96, 80) and image.dtype == torch.float32
    assert target.shape == (96, 80) and target.dtype == torch.int64
    assert set(target.unique().tolist()) <= set(np.unique(mask).tolist()) | {IGNORE_INDEX}  # nearest: no blends
    labelled = target != IGNORE_INDEX
    assert labelled.float().mean() > 0.25  # the smallest rescale still covers 30% of the crop
    classes = red_class(image)
    agree = (classes[labelled] == target[labelled]).float().mean()
    assert agree > 0.8  # the photo's antialiased resize blurs block edges only
    # the same photo against a mirrored mask: what a flip or crop applied to one of them would look like
    mirrored = target.flip(-1)
    both = labelled & (mirrored != IGNORE_INDEX)
    assert (classes[both] == mirrored[both]).float().mean() < agree - 0.3


def test_crop_pads_mask_with_ignore_index():
    photo, mask = blocky_pair()
    transform = train_transform((64, 64), AugmentConfig(scale=(0.5, 0.5), hflip=False, color_jitter=0.0), MEAN, STD)
    image, target = transform(photo, mask)
    padded = target == IGNORE_INDEX
    assert 0.6 < padded.float().mean() < 0.9  # a half-size image in a full-size crop leaves 3/4 padding
    assert torch.allclose(image[:, padded], torch.tensor(-2.0))  # black padding, normalised: (0 - 0.5) / 0.25


def test_crops_smaller_than_the_training_size():
    photo, mask = blocky_pair(size=128, block=16)
    transform = train_transform((128, 128), AugmentConfig(scale=(1.0, 1.0), crop=(32, 48), color_jitter=0.0), MEAN, STD)
    image, target = transform(photo, mask)
    assert image.shape == (3, 32, 48) and target.shape == (32, 48)
    assert not (target == IGNORE_INDEX).any()  # a crop inside the full-size image needs no padding
    # the crop keeps the full resolution: 16-pixel blocks stay 16 pixels wide
    assert (red_class(image) == target).float().mean() > 0.95


def test_flip_happens_and_is_shared():
    photo, mask = blocky_pair()
    transform = train_transform((64, 64), AugmentConfig(scale=(1.0, 1.0), color_jitter=0.0), MEAN, STD)
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        image, target = transform(photo, mask)
        gradient = image[1, 0]  # green: 2 * column, increasing unless flipped
        if gradient[0] > gradient[-1]:
            flipped += 1
            assert torch.equal(target, torch.from_numpy(mask[:, ::-1].copy()).long())
        else:
            assert torch.equal(target, torch.from_numpy(mask).long())
    assert 0 < flipped < 12


def test_colour_jitter_changes_the_photo_only():
    photo, mask = blocky_pair()
    config = AugmentConfig(scale=(1.0, 1.0), hflip=False, color_jitter=0.5)
    plain = train_transform((64, 64), AugmentConfig(scale=(1.0, 1.0), hflip=False, color_jitter=0.0), MEAN, STD)
    torch.manual_seed(0)
    image, target = train_transform((64, 64), config, MEAN, STD)(photo, mask)
    reference, reference_target = plain(photo, mask)
    assert not torch.allclose(image, reference)
    assert torch.equal(target, reference_target)


def test_without_augmentation_only_resizes_deterministically():
    photo, mask = blocky_pair()
    transform = train_transform((32, 32), AugmentConfig(enabled=False), MEAN, STD)
    first, second = transform(photo, mask), transform(photo, mask)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(first[1], torch.from_numpy(mask[::2, ::2].copy()).long())  # nearest halves 8x8 blocks


def test_eval_resizes_the_photo_and_keeps_the_labels_as_they_are():
    photo, mask = blocky_pair(size=64)
    image, target = eval_transform((32, 48), MEAN, STD)(photo, mask)
    assert image.shape == (3, 32, 48)
    assert torch.equal(target, torch.from_numpy(mask).long())
    expected_mean = (photo.astype(np.float32) / 255 - 0.5).mean() / 0.25
    assert abs(image.mean().item() - expected_mean) < 0.05  # normalised with the given mean and std


def test_transforms_pickle_for_loader_workers():
    transform = train_transform((32, 32), AugmentConfig(), MEAN, STD)
    photo, mask = blocky_pair()
    clone = pickle.loads(pickle.dumps(transform))
    torch.manual_seed(1)
    a = transform(photo, mask)
    torch.manual_seed(1)
    b = clone(photo, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
