"""One scene, back to front: ground, far end, frontages, then the queued street objects, the bonnet, the finish."""

from __future__ import annotations

import numpy as np

from cityseg.synth.finish import finish
from cityseg.synth.ground import draw_ground
from cityseg.synth.props import FRONTAGES, ego_bonnet, far_end, people, street_furniture, traffic
from cityseg.synth.scene import Scene, Shot

IMAGE_SIZE = (256, 256)  # (H, W) of each half of a written pair, as in the Kaggle pairs


def render_scene(
    rng: np.random.Generator, size: tuple[int, int] = IMAGE_SIZE, shot: Shot | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random street scene and its exact labels.

    Args:
        rng: the only source of randomness; the same generator state gives the same scene.
        size: (height, width) in pixels; default 256x256, one half of a Kaggle pair.
        shot: draw a frame of a generated drive instead (see ``synth.drive``): ``rng`` places its street.

    Returns:
        (photo, label_ids): (H, W, 3) uint8 RGB, and (H, W) uint8 official Cityscapes label ids (0..33).

    Example:
        >>> photo, ids = render_scene(np.random.default_rng(0))
        >>> photo.shape, ids.shape, ids.dtype
        ((256, 256, 3), (256, 256), dtype('uint8'))
    """
    height, width = size
    if height < 32 or width < 32:
        raise ValueError(f"scene size must be at least 32x32 pixels, got {height}x{width}")
    scene = Scene(rng, height, width, shot)
    draw_ground(scene)
    far_end(scene)
    for side in scene.street.sides.values():
        FRONTAGES[side.kind](scene, side)
    street_furniture(scene)
    traffic(scene)
    people(scene)
    scene.draw_queued()
    ego_bonnet(scene)
    return finish(scene)
