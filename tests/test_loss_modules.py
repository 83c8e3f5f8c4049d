"""cityseg's own loss modules (cityseg.loss_modules): the lean Dice, OHEM; and their sum by name."""

from __future__ import annotations

import pytest
import torch

from cityseg.classes import IGNORE_INDEX
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.loss_modules import DiceLoss, OhemCrossEntropy
from cityseg.loss_registry import LOSS_TERMS
from cityseg.training.module import SegmentationLoss


def batch(seed: int = 0, classes: int = 5, size: int = 24):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, size, size, generator=generator, requires_grad=True)
    masks = torch.randint(0, classes, (2, size, size), generator=generator)
    masks[:, :4] = IGNORE_INDEX  # a void band
    masks[masks == classes - 1] = IGNORE_INDEX  # and one class absent from the truth
    return logits, masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lean_dice_equals_smp_dice_in_value_and_gradient(seed):
    from segmentation_models_pytorch.losses import DiceLoss as SmpDiceLoss

    logits, masks = batch(seed)
    expected = SmpDiceLoss("multiclass", ignore_index=IGNORE_INDEX)(logits, masks)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    ours = DiceLoss()(logits, masks)
    (ours_grad,) = torch.autograd.grad(ours, logits)
    assert float(ours.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert torch.allclose(ours_grad, expected_grad, atol=1e-7)


def test_dice_of_a_perfect_prediction_is_zero_and_absent_classes_do_not_count():
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[:, :, 4:] = 1
    logits = torch.full((1, 3, 8, 8), -50.0)
    logits[:, 0][masks == 0] = 50.0
    logits[:, 1][masks == 1] = 50.0
    assert float(DiceLoss()(logits, masks)) == pytest.approx(0.0, abs=1e-6)
    logits[:, 2] = 100.0  # everything predicted as class 2, which the truth never has
    assert float(DiceLoss()(logits, masks)) == pytest.approx(2 / 3, abs=1e-4)  # classes 0 and 1 fail, 2 adds 0


def test_ohem_is_plain_cross_entropy_when_every_pixel_is_hard():
    logits, masks = batch()
    ohem = OhemCrossEntropy(threshold=1.0, min_kept=0.0)  # p < 1: every labelled pixel is hard
    plain = torch.nn.functional.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX)
    assert float(ohem(logits, masks).detach()) == pytest.approx(float(plain.detach()), rel=1e-6)


def test_ohem_averages_the_hard_pixels_only_and_keeps_a_minimum():
    masks = torch.zeros(1, 1, 10, dtype=torch.long)
    logits = torch.zeros(1, 2, 1, 10)
    logits[0, 0, 0, :8] = 10.0  # 8 easy pixels (p of class 0 near 1), 2 hard ones (p = 0.5)
    per_pixel = torch.nn.functional.cross_entropy(logits, masks, reduction="none").flatten()
    hard_mean = per_pixel[8:].mean()
    assert float(OhemCrossEntropy(0.7, min_kept=0.0)(logits, masks)) == pytest.approx(float(hard_mean))
    kept_half = per_pixel.sort(descending=True).values[:5].mean()  # min_kept 0.5: the 5 hardest
    assert float(OhemCrossEntropy(0.7, min_kept=0.5)(logits, masks)) == pytest.approx(float(kept_half), rel=1e-5)
    assert float(OhemCrossEntropy()(logits, torch.full_like(masks, IGNORE_INDEX))) == 0.0


def test_segmentation_loss_sums_its_terms_by_name():
    logits, masks = batch()
    optim = Config().optim
    combined = SegmentationLoss("ohem+dice", optim=optim)
    assert combined.terms == ["ohem", "dice"]
    expected = LOSS_TERMS["ohem"](None, optim)(logits, masks) + DiceLoss()(logits, masks)
    assert float(combined(logits, masks).detach()) == pytest.approx(float(expected.detach()))
    weighted = SegmentationLoss("ce", class_weights=[1.0, 2.0, 1.0, 1.0, 1.0])
    assert "ce.weight" in dict(weighted.named_buffers())  # the checkpoint key older runs have


def test_losses_leave_out_ignored_pixels_and_weigh_classes():
    logits = torch.randn(2, 3, 8, 8)
    masks = torch.randint(0, 3, (2, 8, 8))
    ignored = masks.clone()
    ignored[:, :4] = 255
    plain = SegmentationLoss("ce")
    expected = torch.nn.functional.cross_entropy(
        logits.permute(0, 2, 3, 1)[:, 4:].reshape(-1, 3), masks[:, 4:].reshape(-1)
    )
    assert torch.allclose(plain(logits, ignored), expected)
    weighted = SegmentationLoss("ce", class_weights=[0.0, 0.0, 1.0])
    only_two = masks == 2
    assert torch.allclose(
        weighted(logits, masks),
        torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[only_two], masks[only_two]),
    )
    assert SegmentationLoss("ce+dice")(logits, ignored) > plain(logits, ignored)
    with pytest.raises(CitysegError, match="unknown loss 'focal'"):
        SegmentationLoss("focal")
