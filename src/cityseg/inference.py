"""Inference on tensors: logits back to a photo's size, sliding windows, flip test-time augmentation.

The shared core of evaluation, training's validation and prediction; torch and NumPy, no files::

    labels_at_size          (C, h, w) logits -> (H, W) uint8 class indices, bilinear then argmax, in row bands
    edge_labels_at_size     the same labels, the bilinear step worked out only near class edges (video)
    sliding_window_logits   a network over overlapping windows of a large image, logits averaged
    flip_averaged_logits    the mean of an image's logits and its mirror image's (mirrored back)
    multi_scale_logits      the mean of the logits of an image rescaled by each factor, at the image's size
    eval_net                a network wrapped as ``data.eval_window`` / ``eval_overlap`` / ``eval_flip`` /
                            ``eval_scales`` say

The logits are never resized as a whole: a band of rows at a time keeps memory bounded, and past
:data:`BILINEAR_MAX_SCALE` times the model's size the last step is a nearest-neighbour resize of the uint8
label map, so an 8000x8000 photo never becomes a float (C, 8000, 8000) tensor.

Torch (and PIL, for the nearest-neighbour step) is imported inside the functions, so importing this
module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cityseg.defaults import TTA_SCALES  # noqa: F401  (re-exported: the scales of --tta)
from cityseg.errors import CitysegError

BILINEAR_MAX_SCALE = 4  # logits are resized bilinearly up to 4x per axis (and BILINEAR_MAX_PIXELS), nearest beyond
BILINEAR_MAX_PIXELS = 2048 * 2048
BAND_ELEMENTS = 1 << 23  # float32 elements of one band of resized logits (32 MiB)
EDGE = 255  # edge_labels_at_size's marker of a pixel between source pixels of different classes
EDGE_CHUNK = 1 << 15  # edge pixels interpolated at once (4 x 32768 x C float32: 10 MiB for 19 classes)
SCALE_STRIDE = 32  # rescaled inputs are rounded to a multiple of the deepest encoder stride


# ---- back to the photo's size -----------------------------------------------------------------


def labels_at_size(
    logits: np.ndarray,
    size: tuple[int, int],
    max_scale: float = BILINEAR_MAX_SCALE,
    max_pixels: int = BILINEAR_MAX_PIXELS,
) -> np.ndarray:
    """Class indices at ``size`` from (C, h, w) logits: bilinear logits then argmax, as evaluation scores them.

    The logits are resized one band of rows at a time (at most :data:`BAND_ELEMENTS` floats), which gives
    exactly ``F.interpolate(mode="bilinear", align_corners=False)`` then argmax. Past ``max_scale`` times the
    logits' size (per axis) or ``max_pixels`` in all, the bilinear step stops there and the uint8 labels
    go the rest of the way by nearest neighbour: a step of a few pixels at that size, and the cost and
    memory no longer grow with the photo.

    Args:
        logits: (C, h, w) float scores.
        size: (H, W) wanted.
        max_scale: largest bilinear magnification per axis.
        max_pixels: largest bilinear output.

    Returns:
        (H, W) uint8 class indices.
    """
    import torch
    import torch.nn.functional as F

    channels, in_h, in_w = logits.shape
    out_h, out_w = int(size[0]), int(size[1])
    if (in_h, in_w) == (out_h, out_w):
        return logits.argmax(axis=0).astype(np.uint8)
    mid_h, mid_w = _bilinear_size((in_h, in_w), (out_h, out_w), max_scale, max_pixels)
    source = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))  # (C, h, w)
    top_rows, bottom_rows, weights = _bilinear_taps(mid_h, in_h)
    labels = np.empty((mid_h, mid_w), dtype=np.uint8)
    band = max(1, BAND_ELEMENTS // (channels * max(mid_w, in_w)))
    with torch.inference_mode():
        for start in range(0, mid_h, band):
            rows = slice(start, min(mid_h, start + band))
            # interpolate between source rows, then along the width (rows kept: F.interpolate at scale 1 is exact)
            blended = torch.lerp(source[:, top_rows[rows]], source[:, bottom_rows[rows]], weights[rows, None])
            resized = F.interpolate(blended[None], size=(blended.shape[1], mid_w), mode="bilinear", align_corners=False)
            labels[rows] = resized[0].max(dim=0).indices.numpy()  # (band, W); max() is faster than argmax() here
    return _nearest_to(labels, (out_h, out_w))


def _bilinear_size(source: tuple[int, int], size: tuple[int, int], max_scale: float, max_pixels: int):
    """(h, w) of labels_at_size's bilinear step: ``size``, capped at ``max_scale`` x ``source`` and ``max_pixels``."""
    mid_h, mid_w = min(size[0], round(max_scale * source[0])), min(size[1], round(max_scale * source[1]))
    shrink = min(1.0, math.sqrt(max_pixels / (mid_h * mid_w)))
    return max(1, round(mid_h * shrink)), max(1, round(mid_w * shrink))


def _nearest_to(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 labels to (H, W) by nearest neighbour (unchanged when already that size)."""
    if labels.shape == tuple(size):
        return labels
    from PIL import Image  # PIL's nearest-neighbour mapping, which the saved predictions were made with

    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))


def edge_labels_at_size(
    logits: np.ndarray,
    size: tuple[int, int],
    max_scale: float = BILINEAR_MAX_SCALE,
    max_pixels: int = BILINEAR_MAX_PIXELS,
) -> np.ndarray:
    """:func:`labels_at_size`'s labels with the bilinear step worked out only near class edges (NumPy, no torch).

    A pixel blends the logits of four source pixels with positive weights. Where those four share their
    top class, the blend ranks it first too (each term does), so the pixel takes it without arithmetic;
    only the pixels between source pixels of different classes, a few percent of a street scene, are
    interpolated, with torch's weights and order of operations. The labels equal :func:`labels_at_size`'s
    except where two classes tie to float precision; a 1280x720 frame from 256x256 logits costs a few
    milliseconds instead of tens, and no torch threads (the video pipeline's other stages keep the cores).

    Args, Returns: as :func:`labels_at_size`.
    """
    channels, in_h, in_w = logits.shape
    out_h, out_w = int(size[0]), int(size[1])
    if channels >= EDGE:  # class indices must leave room for the edge marker
        return labels_at_size(logits, size, max_scale, max_pixels)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    low = _argmax_uint8(logits)
    if (in_h, in_w) == (out_h, out_w):
        return low
    mid_h, mid_w = _bilinear_size((in_h, in_w), (out_h, out_w), max_scale, max_pixels)
    below, right = np.minimum(np.arange(in_h) + 1, in_h - 1), np.minimum(np.arange(in_w) + 1, in_w - 1)
    mixed = (low != low[below]) | (low != low[:, right]) | (low != low[below][:, right])
    cells = np.where(mixed, np.uint8(EDGE), low)  # the class of each 2x2 block of source pixels, or EDGE
    rows, cols = _numpy_taps(mid_h, in_h), _torch_float32_taps(mid_w, in_w)
    labels = cells.take(rows[0], axis=0).take(cols[0], axis=1)  # (mid_h, mid_w): each pixel's block
    flat = labels.reshape(-1)
    edges = np.flatnonzero(flat == EDGE)
    table = logits.reshape(channels, -1).T.copy()  # (h * w, C): a source pixel's scores side by side
    for start in range(0, edges.size, EDGE_CHUNK):
        chunk = edges[start : start + EDGE_CHUNK]
        flat[chunk] = _interpolate_argmax(table, in_w, chunk // mid_w, chunk % mid_w, rows=rows, cols=cols)
    return _nearest_to(labels, (out_h, out_w))


def _argmax_uint8(logits: np.ndarray) -> np.ndarray:
    """argmax over the first axis as uint8, first maximum on ties (a running maximum: faster than argmax here)."""
    best = logits[0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for index in range(1, logits.shape[0]):
        better = logits[index] > best
        np.copyto(best, logits[index], where=better)
        labels[better] = index
    return labels


def _interpolate_argmax(table, in_w, out_rows, out_cols, *, rows, cols) -> np.ndarray:
    """Top class of the bilinear logits at pixels (out_rows, out_cols): between rows first, then along the width."""
    top, bottom, row_weight = (part[out_rows] for part in rows)
    left, right, col_weight = (part[out_cols] for part in cols)
    corners = np.stack([top * in_w + left, bottom * in_w + left, top * in_w + right, bottom * in_w + right])
    upper_left, lower_left, upper_right, lower_right = table.take(corners, axis=0)  # each (n, C)
    down, across = row_weight[:, None], col_weight[:, None]
    left_mix = np.subtract(lower_left, upper_left, out=lower_left)  # in place: a few passes over (n, C) in all
    left_mix *= down
    left_mix += upper_left
    right_mix = np.subtract(lower_right, upper_right, out=lower_right)
    right_mix *= down
    right_mix += upper_right
    right_mix *= across
    left_mix *= 1 - across
    left_mix += right_mix
    return left_mix.argmax(axis=1)


def _numpy_taps(out_len: int, in_len: int):
    """:func:`_bilinear_taps` in NumPy: (lower, upper, float32 weight of upper) per output position."""
    position = np.maximum((np.arange(out_len, dtype=np.float64) + 0.5) * (in_len / out_len) - 0.5, 0)
    lower = np.minimum(np.floor(position).astype(np.intp), in_len - 1)
    upper = np.minimum(lower + 1, in_len - 1)
    return lower, upper, np.clip(position - lower, 0, 1).astype(np.float32)


def _torch_float32_taps(out_len: int, in_len: int):
    """The taps F.interpolate(mode="bilinear", align_corners=False) computes, in float32 as it does."""
    scale = np.float32(in_len) / np.float32(out_len)
    position = np.maximum(scale * (np.arange(out_len, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    lower = np.minimum(np.floor(position).astype(np.intp), in_len - 1)
    upper = np.minimum(lower + 1, in_len - 1)
    return lower, upper, np.clip(position - lower, 0, 1).astype(np.float32)


def _bilinear_taps(out_len: int, in_len: int):
    """Source rows and weights of bilinear resizing ``in_len`` -> ``out_len`` (align_corners=False, as torch)."""
    import torch

    position = ((torch.arange(out_len, dtype=torch.float64) + 0.5) * (in_len / out_len) - 0.5).clamp(min=0)
    lower = position.floor().long().clamp(max=in_len - 1)
    upper = (lower + 1).clamp(max=in_len - 1)
    return lower, upper, (position - lower).clamp(0, 1).float()


# ---- sliding-window inference ------------------------------------------------------------------


def window_stride(window: tuple[int, int], overlap: float) -> tuple[int, int]:
    """The (height, width) step between windows that share ``overlap`` of their size (``data.eval_overlap``).

    Example:
        >>> window_stride((512, 1024), 0.25)
        (384, 768)
    """
    if not 0 <= overlap < 1:
        raise CitysegError(f"data.eval_overlap must be at least 0 and below 1, not {overlap}")
    return max(1, math.ceil(window[0] * (1 - overlap))), max(1, math.ceil(window[1] * (1 - overlap)))


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows ``stride`` apart covering ``length``; the last one is moved back to end at the edge.

    A stride wider than the window is cut to it: windows may overlap, but never leave a gap between them.
    """
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, min(stride, window)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def sliding_window_logits(net: Callable, image, window: tuple[int, int], stride: tuple[int, int], num_classes: int):
    """Logits of a whole image from overlapping windows, averaged where they overlap.

    The network sees windows of the size it was trained on (e.g. the training crop) instead of the
    whole image at once, as in the usual Cityscapes evaluation at 2048x1024; every pixel's logits are
    the mean over the windows that cover it. The windows of a row and column are ``stride`` apart and
    the last one ends at the image's edge, so every pixel is covered (a stride wider than the window is
    cut to the window); a window larger than the image shrinks to it.

    Args:
        net: maps (N, 3, h, w) images to (N, C, h, w) logits (an ``nn.Module``; logits of another size
            are resized bilinearly to the window).
        image: (N, 3, H, W) float tensor, already normalised.
        window: (height, width) of each window, both positive.
        stride: (height, width) step between windows, both positive (see :func:`window_stride`).
        num_classes: C, the channels of the logits.

    Returns:
        (N, C, H, W) float32 logits on ``image``'s device.

    Example:
        >>> net = torch.nn.Conv2d(3, 5, 1)  # doctest: +SKIP
        >>> sliding_window_logits(net, torch.rand(2, 3, 64, 128), (32, 64), (16, 32), 5).shape  # doctest: +SKIP
        torch.Size([2, 5, 64, 128])
    """
    import torch
    import torch.nn.functional as F

    if min(window) <= 0 or min(stride) <= 0:
        raise CitysegError(f"sliding windows need a positive size and stride, not window {window}, stride {stride}")
    batch, _, height, width = image.shape
    win_h, win_w = min(int(window[0]), height), min(int(window[1]), width)
    total = torch.zeros((batch, num_classes, height, width), dtype=torch.float32, device=image.device)  # (N, C, H, W)
    covered = torch.zeros((1, 1, height, width), dtype=torch.float32, device=image.device)  # windows per pixel
    for top in _window_starts(height, win_h, int(stride[0])):
        for left in _window_starts(width, win_w, int(stride[1])):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            logits = net(image[:, :, rows, cols])  # (N, C, win_h, win_w)
            if logits.shape[1] != num_classes:
                raise ValueError(f"the network gives {logits.shape[1]} channels, not num_classes={num_classes}")
            if logits.shape[-2:] != (win_h, win_w):
                logits = F.interpolate(logits, size=(win_h, win_w), mode="bilinear", align_corners=False)
            total[:, :, rows, cols] += logits.float()
            covered[:, :, rows, cols] += 1
    return total / covered  # every pixel is covered at least once


def flip_averaged_logits(net: Callable, images):
    """Mean of the logits of ``images`` and, mirrored back, of their mirror images: flip test-time augmentation.

    Street scenes look as plausible mirrored (training flips them too), so the two passes err differently
    and their mean is a little more accurate, at twice the cost.

    Args:
        net: maps (N, 3, H, W) images to (N, C, H, W) logits (torch tensors, or NumPy arrays for a backend).
        images: (N, 3, H, W) float tensor or array, already normalised.
    """
    return (net(images) + _mirror(net(_mirror(images)))) / 2


def _mirror(images):
    """(..., W) tensor or array, left and right swapped."""
    return images.flip(-1) if hasattr(images, "flip") else np.ascontiguousarray(images[..., ::-1])


# ---- multi-scale test-time augmentation -------------------------------------------------------


def scaled_size(size: tuple[int, int], scale: float, stride: int = SCALE_STRIDE) -> tuple[int, int]:
    """``size`` times ``scale``, each side rounded to a multiple of ``stride`` (at least one stride).

    Example:
        >>> scaled_size((256, 256), 0.75), scaled_size((256, 512), 1.25)
        ((192, 192), (320, 640))
    """
    return tuple(max(stride, int(side * scale / stride + 0.5) * stride) for side in size)  # halves round up


def multi_scale_logits(net: Callable, images, scales: tuple[float, ...], stride: int = SCALE_STRIDE):
    """Mean over ``scales`` of the logits of ``images`` rescaled by each, resized back to the images' size.

    A network sees objects at the sizes it trained on best; rescaled copies show each object at several
    sizes, and the mean of their logits (bilinear, at the size of ``images``) is more accurate than one pass,
    at the cost of the pixels of every scale (0.75/1/1.25: 2.6x one pass; with flip, 5.2x).

    Args:
        net: maps (N, 3, h, w) images to (N, C, h', w') logits (torch tensors, or NumPy arrays for a backend).
        images: (N, 3, H, W) float tensor or array, already normalised.
        scales: factors; scale 1 is the image as it is, the others are rounded to multiples of ``stride``.

    Returns:
        (N, C, H, W) logits, of the same kind as ``images``.
    """
    import torch
    import torch.nn.functional as F

    as_array = not isinstance(images, torch.Tensor)
    batch = torch.from_numpy(np.ascontiguousarray(images)) if as_array else images
    size = tuple(batch.shape[-2:])
    total = None
    for scale in scales:
        target = size if scale == 1 else scaled_size(size, scale, stride)
        scaled = batch if target == size else F.interpolate(batch, size=target, mode="bilinear", align_corners=False)
        logits = net(scaled.numpy() if as_array else scaled)
        logits = torch.from_numpy(logits) if as_array else logits
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        total = logits if total is None else total + logits
    mean = total / len(scales)
    return mean.numpy() if as_array else mean


def multi_scale_net(net, scales: tuple[float, ...]):
    """``net`` wrapped to run as :func:`multi_scale_logits` does, for code that takes a network."""
    import torch

    class MultiScale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return multi_scale_logits(self.net, images, tuple(scales))

    return MultiScale()


def eval_net(
    net,
    window: tuple[int, int] = (0, 0),
    overlap: float = 0.33,
    flip: bool = False,
    num_classes: int = 0,
    scales: tuple[float, ...] = (1.0,),
):
    """``net`` wrapped to evaluate as the config's ``data.eval_window``, ``eval_overlap`` and ``eval_flip`` say.

    Each option is one wrapper around the previous one, innermost first: sliding windows, then the mirror
    image, then the scales (each scale with its mirror image); nothing asked, ``net`` itself comes back.

    Args:
        net: maps (B, 3, H, W) images to (B, C, H, W) logits.
        window: (height, width) of the sliding windows; (0, 0) runs the whole image at once.
        overlap: share of a window its neighbours overlap (see :func:`window_stride`).
        flip: average with the mirror image's logits (see :func:`flip_averaged_logits`).
        num_classes: C, needed with sliding windows.
        scales: rescale factors averaged at the image's size (see :func:`multi_scale_logits`); (1.0,) = one.

    Returns:
        A callable (an ``nn.Module`` when wrapped) from (B, 3, H, W) images to (B, C, H, W) logits.

    Example:
        >>> windowed = eval_net(net, (512, 1024), overlap=0.33, flip=True, num_classes=19)  # doctest: +SKIP
        >>> windowed(images).shape  # (B, C, H, W) for (B, 3, H, W) images of any size  # doctest: +SKIP
    """
    if min(window) > 0:
        net = sliding_window_net(net, window, overlap, num_classes)
    if flip:
        net = flip_averaged_net(net)
    if tuple(scales) != (1.0,):
        net = multi_scale_net(net, tuple(scales))
    return net


def flip_averaged_net(net):
    """``net`` wrapped to run as :func:`flip_averaged_logits` does, for code that takes a network."""
    import torch

    class FlipAveraged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return flip_averaged_logits(self.net, images)

    return FlipAveraged()


def sliding_window_net(net, window: tuple[int, int], overlap: float, num_classes: int):
    """``net`` wrapped to run as :func:`sliding_window_logits` does, for code that takes a network.

    Example:
        >>> windowed = sliding_window_net(net, (512, 1024), overlap=0.33, num_classes=19)  # doctest: +SKIP
        >>> windowed(images).shape  # (B, C, H, W) for (B, 3, H, W) images of any size  # doctest: +SKIP
    """
    import torch

    stride = window_stride(tuple(window), overlap)

    class SlidingWindow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, C, H, W)
            return sliding_window_logits(self.net, images, tuple(window), stride, num_classes)

    return SlidingWindow()
