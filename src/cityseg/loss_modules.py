"""cityseg's own loss modules, terms smp and torch lack in a form a CPU can afford: OHEM cross-entropy, a lean Dice."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cityseg.classes import IGNORE_INDEX


class OhemCrossEntropy(torch.nn.Module):
    """Cross-entropy averaged over the hard pixels only (MMSegmentation's OHEM sampler on Cityscapes).

    A pixel is hard when the probability of its true class is below ``threshold``; at least ``min_kept``
    (a share of the labelled pixels) of the hardest are always kept, so a batch the network already
    knows still gives a gradient. Road and sky stop dominating the loss once they are learnt.

    Args:
        threshold: probability of the true class under which a pixel counts (0.7, as MMSegmentation).
        min_kept: share of the labelled pixels kept at least (0.1).
        class_weights: optional (C,) weights of the per-pixel terms.

    Shape:
        logits (B, C, H, W), masks (B, H, W) int64 -> scalar.
    """

    def __init__(self, threshold: float = 0.7, min_kept: float = 0.1, class_weights: Sequence[float] | None = None):
        super().__init__()
        self.threshold = threshold
        self.min_kept = min_kept
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        losses = F.cross_entropy(logits, masks, weight=self.weight, ignore_index=IGNORE_INDEX, reduction="none")
        losses = losses.flatten()  # (B*H*W,)
        labelled = masks.flatten() != IGNORE_INDEX
        count = int(labelled.sum())
        if count == 0:
            return logits.sum() * 0.0
        labelled_losses = losses[labelled]  # (N,)
        with torch.no_grad():
            # -log p(true class) > -log threshold  <=>  p(true class) < threshold
            hard = labelled_losses > -torch.log(torch.tensor(self.threshold))
            keep = max(1, int(self.min_kept * count))
        if int(hard.sum()) < keep:  # too few hard pixels: the `keep` hardest, ties broken by position
            return torch.topk(labelled_losses, keep, sorted=False).values.mean()
        return labelled_losses[hard].mean()


class DiceLoss(torch.nn.Module):
    """Multiclass soft Dice loss, ``IGNORE_INDEX`` left out: the same value as smp's ``DiceLoss("multiclass")``.

    ``mean over classes c of (1 - 2 I_c / (P_c + T_c)) * [T_c > 0]``, with ``I_c`` the probability mass of
    class c on its own pixels, ``P_c`` all of class c's probability mass and ``T_c`` its pixel count (over
    the batch). smp builds a one-hot (B, C, H*W) copy of the masks and an L1 norm of ``probabilities -
    one_hot`` to get these sums; here they come from one gather and two index sums, which made the whole
    training step of the cpu-hour recipe about 10% faster on a 2-core CPU (benchmarks/step_profile.py).

    Shape:
        logits (B, C, H, W), masks (B, H, W) int64 -> scalar.
    """

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = eps  # as smp: the denominator is never below it

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        probabilities = logits.log_softmax(dim=1).exp()  # (B, C, H, W), as smp computes them
        labelled = masks != IGNORE_INDEX  # (B, H, W)
        targets = torch.where(labelled, masks, 0)  # (B, H, W) valid class indices
        own = probabilities.gather(1, targets.unsqueeze(1)).squeeze(1)[labelled]  # (N,) p of each pixel's class
        classes = targets[labelled]  # (N,)
        intersection = torch.zeros(num_classes, dtype=own.dtype, device=own.device).index_add(0, classes, own)
        counts = torch.bincount(classes, minlength=num_classes).to(own.dtype)  # T_c
        mass = (probabilities * labelled.unsqueeze(1)).sum(dim=(0, 2, 3))  # P_c
        score = intersection / (0.5 * (mass + counts)).clamp_min(self.eps)
        return ((1.0 - score) * (counts > 0).to(score.dtype)).mean()
