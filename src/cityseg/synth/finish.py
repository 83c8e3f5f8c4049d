"""Photo finishing: surface patterns, per-class texture, cast shadows, vignette, haze, sensor noise, lens blur,
exposure, colour temperature and gamma; vectorised in numpy over the drawn canvas.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cityseg.synth.materials import IS_GROUND, TEXTURE_BLOTCH, TEXTURE_GRAIN, TEXTURE_PIXEL
from cityseg.synth.patterns import paving, surface_patterns

if TYPE_CHECKING:
    from cityseg.synth.dice import Dice
    from cityseg.synth.scene import Scene


def uniform_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance uniform noise (float32), from raw bytes: far cheaper than normal samples."""
    raw = np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.uint8).reshape(shape)
    return (raw.astype(np.float32) - np.float32(127.5)) * np.float32(1 / 73.9)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """(H, W) float32 zero-mean noise with features about ``cell`` pixels across (bilinear upsampling)."""
    gh, gw = max(2, math.ceil(height / cell) + 1), max(2, math.ceil(width / cell) + 1)
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BILINEAR)) * 2.0


def soften(image: np.ndarray, weight: float) -> np.ndarray:
    """(H, W, C) separable 3-tap blur [w, 1 - 2w, w] (edges repeat): a cheap, slight lens softness."""
    out = image * np.float32(1 - 2 * weight)
    out[1:] += image[:-1] * np.float32(weight)
    out[:-1] += image[1:] * np.float32(weight)
    out[0] += image[0] * np.float32(weight)
    out[-1] += image[-1] * np.float32(weight)
    result = out * np.float32(1 - 2 * weight)
    result[:, 1:] += out[:, :-1] * np.float32(weight)
    result[:, :-1] += out[:, 1:] * np.float32(weight)
    result[:, 0] += out[:, 0] * np.float32(weight)
    result[:, -1] += out[:, -1] * np.float32(weight)
    return result


@functools.lru_cache(maxsize=8)
def _radius2(height: int, width: int) -> np.ndarray:
    """(H, W) squared distance from the image centre, in image widths and heights (for the vignette)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return ((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2


def finish(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Turn the drawn canvas into the final (photo, label ids): (H, W, 3) uint8 RGB and (H, W) uint8 ids."""
    rng, d, h, w = scene.rng, scene.dice, scene.h, scene.w
    cam, light = scene.cam, scene.light
    label = np.asarray(scene.canvas.label, dtype=np.uint8)  # (H, W) official label ids
    photo = np.asarray(scene.canvas.photo, dtype=np.float32) / 255  # (H, W, 3)
    surface_patterns(scene, photo, label)
    paving(scene, photo, label)
    texture = (
        TEXTURE_BLOTCH[label] * smooth_noise(scene.steady_rng, h, w, h / 10)  # a drive keeps these blotches
        + TEXTURE_GRAIN[label] * smooth_noise(rng, h, w, 2.5 * scene.px)
        + TEXTURE_PIXEL[label] * uniform_noise(rng, (h, w))
    )  # (H, W)
    ground = IS_GROUND[label]
    shadow = np.where(ground, np.asarray(scene.canvas.shadow, dtype=np.float32) / 255, np.float32(1))
    vignette = 1 - np.float32(d.uniform(0.1, 0.3)) * _radius2(h, w)
    photo *= (np.clip(1 + texture, 0.2, 2.0) * vignette)[..., None]
    photo *= 1 - (1 - shadow[..., None]) * np.array([1.0, 0.96, 0.88], dtype=np.float32)  # shadows are bluish
    depth = cam.row_ground_depth(h)  # metres to the road, per row
    haze = (1 - np.exp(-depth / np.float32(light.visibility)))[:, None] * ground  # (H, W)
    photo += (np.asarray(light.haze_colour, dtype=np.float32) / 255 - photo) * haze[..., None]
    photo = soften(
        photo * 255 + uniform_noise(rng, (h, w, 3)) * np.float32(d.uniform(1.0, 3.5)), d.uniform(0.06, 0.2)
    )  # sensor noise, then a slight lens blur
    image = Image.fromarray(np.clip(photo + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(image.point(_grade(d))), label


def _grade(dice: Dice) -> list[int]:
    """Exposure, colour temperature and gamma as one lookup table per channel (``Image.point``'s 768 entries)."""
    exposure, warmth, gamma = dice.uniform(0.72, 1.18), dice.uniform(-1, 1), dice.uniform(0.9, 1.1)
    gains = (exposure * (1 + 0.07 * warmth), exposure, exposure * (1 - 0.09 * warmth))
    return [min(255, int(min(1.0, level / 255 * gain) ** gamma * 255 + 0.5)) for gain in gains for level in range(256)]
