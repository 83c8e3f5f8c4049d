"""Vegetation: trees, trunk and a crown of overlapping blobs lit from above, with their shadow on the ground."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cityseg.synth.camera import NEAR
from cityseg.synth.ids import VEGETATION
from cityseg.synth.materials import BARK, FOLIAGE, scale

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene


def tree(scene: Scene, x: float, z: float, crown_y: float, radius: float, now: bool = False) -> None:
    """A tree at (x, z): a trunk up to ``crown_y`` metres and a crown of blobs ``radius`` metres around.

    ``now`` draws it at once (behind everything queued); otherwise it is queued by depth like street objects.
    """
    d = scene.dice
    foliage, bark = scene.pick(FOLIAGE, 0.12), scene.pick(BARK)
    blobs = sorted(
        (
            (
                d.uniform(-0.6, 0.6) * radius,
                d.uniform(-0.5, 0.6) * radius,
                d.uniform(-0.3, 0.3) * radius,
                d.uniform(0.45, 0.75) * radius,
                d.uniform(0.75, 1.2),
            )
            for _ in range(d.integers(4, 8))
        ),
        key=lambda b: b[1],
    )  # lower (shaded) blobs first, the lit top last

    def draw() -> None:
        cam, cv = scene.cam, scene.canvas
        if scene.passed(z, 0.5):  # a drive has come level with it: it is off to the side
            return
        zz = cam.clamp_depth(z, NEAR + 0.5)
        base, top = cam.point((x, 0.0, zz)), cam.point((x, crown_y, zz))
        cv.polygon(cam.segment(base, top, 0.35, zz, 2 * scene.px), VEGETATION, scene.haze(bark, zz))
        for dx, dy, dz, r, tone in blobs:
            cz = cam.clamp_depth(zz + dz, NEAR + 0.3)
            colour = scene.haze(scale(foliage, tone * (0.8 + 0.35 * (dy / radius + 0.5))), cz)
            centre = cam.point((x + dx, crown_y + dy, cz))
            cv.ellipse(centre, cam.width_px(r, cz), cam.height_px(r, cz), VEGETATION, colour)
        if not scene.light.overcast:
            shadow = cam.ground_quad(x - radius * 0.8, x + radius * 0.8, zz - radius * 0.5, zz + radius * 0.5)
            cv.cast_shadow(shadow, 0.35)

    if now:
        draw()
    else:
        scene.add_object(z - radius * 0.3, draw)
