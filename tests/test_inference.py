"""Inference on tensors: logits back to the photo's size, sliding windows, flip averaging, eval_net's wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cityseg import inference
from cityseg.errors import CitysegError
from cityseg.inference import (
    _window_starts,
    edge_labels_at_size,
    eval_net,
    flip_averaged_logits,
    labels_at_size,
    sliding_window_logits,
    sliding_window_net,
    window_stride,
)

torch.set_num_threads(1)


def bilinear_argmax(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The reference: the whole (C, h, w) resized at once by torch, then argmax."""
    resized = F.interpolate(torch.from_numpy(logits)[None], size=size, mode="bilinear", align_corners=False)
    return resized[0].argmax(0).numpy()


# ---- back to the photo's size -----------------------------------------------------------------


def test_labels_at_size_equals_whole_bilinear_resize_in_every_band(monkeypatch):
    logits = np.random.default_rng(1).standard_normal((5, 16, 24)).astype(np.float32)
    expected = bilinear_argmax(logits, (61, 90))
    np.testing.assert_array_equal(labels_at_size(logits, (61, 90)), expected)
    monkeypatch.setattr(inference, "BAND_ELEMENTS", 5 * 90 * 3)  # three rows per band
    np.testing.assert_array_equal(labels_at_size(logits, (61, 90)), expected)
    np.testing.assert_array_equal(labels_at_size(logits, (16, 24)), logits.argmax(0))  # same size: no resize
    np.testing.assert_array_equal(labels_at_size(logits, (7, 5)), bilinear_argmax(logits, (7, 5)))  # smaller too


@pytest.mark.parametrize(("limits", "middle"), [({"max_scale": 4}, (32, 32)), ({"max_pixels": 100 * 150}, (100, 150))])
def test_labels_beyond_the_bilinear_limits_finish_with_nearest(limits, middle):
    logits = np.random.default_rng(2).standard_normal((4, 8, 8)).astype(np.float32)
    capped = labels_at_size(logits, (400, 600), **{"max_scale": 100, **limits})
    assert capped.shape == (400, 600) and capped.dtype == np.uint8
    bilinear = labels_at_size(logits, middle, max_scale=100)
    nearest = np.asarray(Image.fromarray(bilinear).resize((600, 400), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(capped, nearest)


def blocky_logits(seed: int, channels: int = 6, shape: tuple[int, int] = (24, 32)) -> np.ndarray:
    """Logits whose top class comes in patches (as a street's do), plus noise: most 2x2 blocks share a class."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((channels, shape[0] // 4, shape[1] // 4)).astype(np.float32)
    fine = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    return fine + 0.05 * rng.standard_normal(fine.shape).astype(np.float32)


@pytest.mark.parametrize(
    ("size", "limits"),
    [((61, 90), {}), ((24, 32), {}), ((7, 5), {}), ((150, 70), {}), ((400, 600), {"max_scale": 4})],
)
def test_edge_labels_equal_labels_at_size(size, limits):
    """Up, same size, down, stretched and past the bilinear limit: the same labels as labels_at_size's."""
    for logits in (blocky_logits(5), np.random.default_rng(6).standard_normal((5, 16, 24)).astype(np.float32)):
        expected = labels_at_size(logits, size, **limits)
        np.testing.assert_array_equal(edge_labels_at_size(logits, size, **limits), expected)


def test_edge_labels_interpolate_only_near_class_edges(monkeypatch):
    logits = blocky_logits(7)
    interpolated = []
    real = inference._interpolate_argmax
    monkeypatch.setattr(
        inference, "_interpolate_argmax", lambda *a, **k: interpolated.append(a[2].size) or real(*a, **k)
    )
    monkeypatch.setattr(inference, "EDGE_CHUNK", 500)  # several chunks
    labels = edge_labels_at_size(logits, (96, 128))
    np.testing.assert_array_equal(labels, bilinear_argmax(logits, (96, 128)))
    assert len(interpolated) > 1 and 0 < sum(interpolated) < 0.6 * labels.size
    one_class = np.zeros((3, 4, 4), np.float32)
    one_class[1] = 1
    interpolated.clear()
    assert (edge_labels_at_size(one_class, (40, 40)) == 1).all() and sum(interpolated) == 0


def test_labels_at_size_takes_one_pixel_and_stretched_shapes():
    logits = np.random.default_rng(3).standard_normal((3, 1, 1)).astype(np.float32)
    labels = labels_at_size(logits, (5, 9))
    assert labels.shape == (5, 9) and (labels == logits.argmax(0)[0, 0]).all()  # one source pixel everywhere
    tall = np.random.default_rng(4).standard_normal((3, 2, 8)).astype(np.float32)
    np.testing.assert_array_equal(labels_at_size(tall, (8, 2)), bilinear_argmax(tall, (8, 2)))


# ---- sliding windows --------------------------------------------------------------------------


def test_window_stride_and_starts_cover_the_image_to_its_edge():
    assert window_stride((512, 1024), 0.25) == (384, 768)
    assert window_stride((3, 3), 0.9) == (1, 1)  # never a zero step
    with pytest.raises(CitysegError, match="eval_overlap"):
        window_stride((8, 8), 1.0)
    assert _window_starts(10, 4, 4) == [0, 4, 6]  # the last window moved back to end at the edge
    assert _window_starts(10, 4, 9) == [0, 4, 6]  # a stride wider than the window is cut to it: no gap
    assert _window_starts(3, 4, 2) == [0]  # a window larger than the image: one


def test_sliding_window_with_one_window_is_the_plain_forward():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 3, padding=1))
    image = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        plain = net(image)
        for window in ((24, 40), (64, 64)):  # the image's size, and larger (shrinks to the image)
            torch.testing.assert_close(sliding_window_logits(net, image, window, (8, 8), 5), plain)
        # windows smaller than the image see zero padding at their edges: a 3x3 net's logits then differ
        assert not torch.allclose(sliding_window_logits(net, image, (12, 20), (6, 10), 5), plain)


@pytest.mark.parametrize(("window", "stride"), [((8, 8), (8, 8)), ((10, 16), (3, 7)), ((24, 13), (5, 50))])
def test_sliding_window_of_a_pointwise_net_is_the_plain_forward(window, stride):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 1)  # each pixel's logits depend on that pixel only: any windowing agrees
    image = torch.randn(2, 3, 24, 40)
    with torch.no_grad():
        torch.testing.assert_close(sliding_window_logits(net, image, window, stride, 4), net(image))


def test_sliding_window_averages_where_windows_overlap():
    calls = []

    def net(tile):  # (N, 3, h, w) -> (N, 1, h, w) of the window's index: the mean shows the coverage
        calls.append(tile.shape[-2:])
        return torch.full((tile.shape[0], 1, *tile.shape[-2:]), float(len(calls)))

    logits = sliding_window_logits(net, torch.zeros(1, 3, 4, 10), (4, 6), (4, 4), 1)  # windows at x = 0 and 4
    assert calls == [(4, 6), (4, 6)]
    np.testing.assert_allclose(logits[0, 0, 0].numpy(), [1, 1, 1, 1, 1.5, 1.5, 2, 2, 2, 2])


def test_sliding_window_resizes_smaller_logits_and_checks_channels():
    def half_size(tile):  # a network whose logits come out at half the input's size (a stride-2 head)
        return torch.ones(tile.shape[0], 2, tile.shape[2] // 2, tile.shape[3] // 2)

    logits = sliding_window_logits(half_size, torch.zeros(1, 3, 8, 12), (8, 8), (8, 4), 2)
    assert logits.shape == (1, 2, 8, 12)
    torch.testing.assert_close(logits, torch.ones(1, 2, 8, 12))
    with pytest.raises(ValueError, match="channels"):
        sliding_window_logits(half_size, torch.zeros(1, 3, 8, 12), (8, 8), (8, 4), 3)
    with pytest.raises(CitysegError, match="positive"):
        sliding_window_logits(half_size, torch.zeros(1, 3, 8, 12), (0, 8), (8, 4), 2)


# ---- flip test-time augmentation, eval_net ------------------------------------------------------


def test_flip_averaging_means_the_logits_of_the_image_and_its_mirror_image():
    ramp = torch.arange(6, dtype=torch.float32)  # a network that knows left from right: adds the column index

    def sided(images):
        return images[:, :1] + (ramp if isinstance(images, torch.Tensor) else ramp.numpy())

    images = torch.randn(2, 3, 4, 6)
    expected = images[:, :1] + ramp.mean()  # the ramp and its mirror average to its mean everywhere
    torch.testing.assert_close(flip_averaged_logits(sided, images), expected)
    torch.testing.assert_close(flip_averaged_logits(sided, images.numpy()), expected.numpy())  # backends' arrays
    pointwise = torch.nn.Conv2d(3, 5, 1)  # mirror-symmetric: flipping changes nothing
    with torch.no_grad():
        torch.testing.assert_close(eval_net(pointwise, flip=True)(images), pointwise(images))
        assert eval_net(pointwise) is pointwise  # nothing asked, nothing wrapped


def test_eval_net_wraps_windows_inside_the_flip():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1)
    images = torch.randn(1, 3, 16, 24)
    wrapped = eval_net(net, (8, 12), overlap=0.5, flip=True, num_classes=4)
    assert isinstance(wrapped, torch.nn.Module) and list(wrapped.parameters())  # the net's weights inside
    windowed = sliding_window_net(net, (8, 12), 0.5, 4)
    with torch.no_grad():
        expected = flip_averaged_logits(lambda batch: sliding_window_logits(net, batch, (8, 12), (4, 6), 4), images)
        torch.testing.assert_close(wrapped(images), expected)
        torch.testing.assert_close(eval_net(net, (8, 12), 0.5, num_classes=4)(images), windowed(images))


# ---- multi-scale test-time augmentation -------------------------------------------------------


class SizeRecorder(torch.nn.Module):
    """A pointwise network (1x1 convolution) that remembers the input sizes it saw."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, images):
        self.sizes.append(tuple(images.shape[-2:]))
        return self.conv(images)


def test_scaled_sizes_are_multiples_of_the_encoder_stride():
    assert inference.scaled_size((256, 256), 0.75) == (192, 192)
    assert inference.scaled_size((256, 512), 1.25) == (320, 640)
    assert inference.scaled_size((40, 40), 0.1) == (32, 32)  # never below one stride


def test_multi_scale_runs_every_scale_and_averages_at_the_image_size():
    net = SizeRecorder()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits = inference.multi_scale_logits(net, images, (0.5, 1.0, 1.5))
        assert net.sizes == [(32, 64), (64, 96), (96, 160)]  # 0.5x96 = 48 rounds to 64: multiples of 32

        def at(size):
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            return F.interpolate(net.conv(scaled), size=(64, 96), mode="bilinear", align_corners=False)

        expected = (at((32, 64)) + net.conv(images) + at((96, 160))) / 3
    assert logits.shape == (2, 4, 64, 96)
    torch.testing.assert_close(logits, expected)


def test_multi_scale_of_a_flat_image_is_the_flat_logits_and_numpy_matches_torch():
    net = SizeRecorder()
    flat = torch.full((1, 3, 64, 64), 0.3)
    with torch.no_grad():
        plain = net(flat)
        scaled = inference.multi_scale_logits(net, flat, inference.TTA_SCALES)
        as_array = inference.multi_scale_logits(lambda x: net(torch.from_numpy(x)).numpy(), flat.numpy(), (0.75, 1.0))
    torch.testing.assert_close(scaled, plain)  # a pointwise net on a flat image: every scale agrees
    assert isinstance(as_array, np.ndarray) and np.allclose(as_array, plain.numpy(), atol=1e-6)


def test_eval_net_puts_the_scales_outside_the_flip():
    net = SizeRecorder()
    wrapped = eval_net(net, flip=True, scales=(0.5, 1.0))
    with torch.no_grad():
        wrapped(torch.randn(1, 3, 64, 64))
    assert net.sizes == [(32, 32), (32, 32), (64, 64), (64, 64)]  # each scale with its mirror image
    assert eval_net(net) is net and eval_net(net, scales=(1.0,)) is net
