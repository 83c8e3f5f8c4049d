"""Tests for the synth camera: projection, visible faces, and per-pixel rays that agree with the projection."""

from __future__ import annotations

import numpy as np
import pytest

from cityseg.synth.camera import Camera
from cityseg.synth.dice import Dice
from cityseg.synth.geometry import ACROSS_STREET, ALONG_STREET

CAMERA = Camera(fx=256.0, fy=512.0, cx=128.0, horizon=110.0, height=1.3)


def test_projection_puts_eye_level_on_the_horizon_and_the_road_below():
    for point in ((0.0, 1.3, 10.0), (-4.0, 1.3, 50.0)):
        assert CAMERA.point(point)[1] == pytest.approx(CAMERA.horizon)
    assert CAMERA.point((0.0, 0.0, 10.0)) == pytest.approx((128.0, 110.0 + 512 * 1.3 / 10))
    assert CAMERA.point((2.0, 0.0, 10.0))[0] == pytest.approx(128.0 + 256 * 2 / 10)  # right of the camera


def test_random_camera_fits_the_image():
    camera = Camera.random(Dice(np.random.default_rng(0)), 256, 512)
    assert 0.4 * 512 <= camera.cx <= 0.6 * 512 and 0.36 * 256 <= camera.horizon <= 0.47 * 256
    assert camera.fy == pytest.approx(camera.fx * 2 * 256 / 512)


def test_box_faces_are_those_facing_the_camera_far_to_near():
    # a 5 m long, 2 m wide, 4 m high box ahead and to the right, taller than the camera
    faces = CAMERA.box_faces((3.0, 0.0, 10.0), ALONG_STREET, ACROSS_STREET, 5.0, 2.0, 4.0)
    assert [face.name for face in faces] == ["left", "back"]  # the side toward us is farther than the end


@pytest.mark.parametrize(
    ("on_x", "plane", "u0", "points"),
    [
        (True, 6.0, 5.0, [(6.0, 0.4, 8.0), (6.0, 2.5, 30.0)]),  # a wall along the street, X = 6, from Z = 5
        (False, 40.0, -10.0, [(-3.0, 1.0, 40.0), (7.5, 6.0, 40.0)]),  # a facade across it, Z = 40, from X = -10
    ],
)
def test_face_coordinates_invert_the_projection(on_x, plane, u0, points):
    pixels = np.array([CAMERA.point(p) for p in points]) - 0.5  # the rays run through pixel centres
    n = len(points)
    u, v, foot_u, foot_v = CAMERA.face_coordinates(
        pixels[:, 0],
        pixels[:, 1],
        np.full(n, on_x),
        np.full(n, plane, np.float32),
        np.full(n, u0, np.float32),
        np.ones(n, np.float32),
        np.zeros(n, np.float32),
    )
    along = [p[2] if on_x else p[0] for p in points]
    np.testing.assert_allclose(u, np.array(along) - u0, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(v, [p[1] for p in points], rtol=1e-4, atol=1e-3)
    assert (foot_u > 0).all() and (foot_v > 0).all()


def test_ground_coordinates_invert_the_projection():
    points = [(-2.0, 0.0, 6.0), (3.5, 0.0, 25.0)]
    pixels = np.array([CAMERA.point(p) for p in points]) - 0.5
    x, z, foot_x, foot_z = CAMERA.ground_coordinates(pixels[:, 0], pixels[:, 1])
    np.testing.assert_allclose(x, [p[0] for p in points], rtol=1e-9)
    np.testing.assert_allclose(z, [p[2] for p in points], rtol=1e-9)
    assert foot_z[1] > foot_z[0] and foot_x[1] > foot_x[0]  # a pixel covers more road farther away
    depth = CAMERA.row_ground_depth(256)
    assert depth[int(CAMERA.horizon) + 30] == pytest.approx(512 * 1.3 / (int(CAMERA.horizon) + 30 - 110), rel=1e-5)
