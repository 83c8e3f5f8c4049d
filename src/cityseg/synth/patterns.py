"""Surface patterns, per pixel: windows on facades, bars on fences, joints in walls and between paving slabs.

Drawing every window as a polygon would alias on far facades and cost thousands of polygons. Instead each
patterned face is registered (``Scene.add_surface``) and marked in the canvas's surface layer; here each
marked pixel's ray is met with its face's plane (``Camera.face_coordinates``) to get face coordinates in
metres, and the pattern is box-filtered over the pixel's footprint, so far patterns blur instead of flickering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from cityseg.synth.ids import SIDEWALK

if TYPE_CHECKING:
    from cityseg.synth.scene import Scene

# the "kind" of a registered surface: which pattern it shows
WINDOWS, BARS, JOINTS = 1, 2, 3


def coverage(pos: np.ndarray, period, duty, footprint) -> np.ndarray:
    """Share of a pixel covered by the "on" part of a periodic pattern (box-filtered, so far patterns don't alias).

    The pattern is on where ``pos mod period < duty * period``; a pixel spans ``footprint`` along ``pos``.
    """

    def cumulative(x):
        q = x / period
        whole = np.floor(q)
        return (whole * duty + np.minimum(q - whole, duty)) * period

    footprint = np.maximum(footprint, 1e-4)
    return (cumulative(pos + footprint / 2) - cumulative(pos - footprint / 2)) / footprint


class _Params:
    """The parameters of the surface each patterned pixel shows, looked up one key at a time.

    Gathering only the keys a pattern asks for, for the pixels it paints, costs a fraction of spreading the
    whole table over every patterned pixel (a 720p drive frame has hundreds of thousands).
    """

    def __init__(self, table: np.ndarray, surface: np.ndarray, column: dict[str, int]):
        self._by_key = np.ascontiguousarray(table.T)  # (K, ids) float32: one row per key
        self._surface, self._column = surface, column  # (N,) surface id of each patterned pixel

    def __call__(self, key: str, rows=slice(None)) -> np.ndarray:
        """(n,) values of ``key`` for ``rows`` (0 where no surface has that key)."""
        if key in self._column:
            return self._by_key[self._column[key]][self._surface[rows]]
        return np.zeros(self._surface[rows].shape, dtype=np.float32)

    def colour(self, key: str, rows) -> np.ndarray:
        """(n, 3) the colour stored under ``key`` as ``key_r``, ``key_g``, ``key_b``."""
        return np.stack([self(f"{key}_r", rows), self(f"{key}_g", rows), self(f"{key}_b", rows)], -1)


def surface_patterns(scene: Scene, photo: np.ndarray, label: np.ndarray) -> None:
    """Paint the patterns onto ``photo`` ((H, W, 3) float32, in place) where each patterned face is visible."""
    if not scene.surfaces:
        return
    surface_ids = np.asarray(scene.canvas.surface)
    keys = sorted({key for entry in scene.surfaces for key in entry})
    column = {key: i for i, key in enumerate(keys)}
    ids = max(256, len(scene.surfaces) + 1)  # a drive's canvas numbers more surfaces than 255
    table = np.zeros((ids, len(keys)), dtype=np.float32)  # surface id -> its parameters; row 0 unused
    table[1 : len(scene.surfaces) + 1] = [[entry.get(key, 0.0) for key in keys] for entry in scene.surfaces]
    visible = (surface_ids > 0) & (label == table[:, column["label"]].astype(np.uint8)[surface_ids])
    ys, xs = np.nonzero(visible)
    if len(ys) == 0:
        return
    p = _Params(table, surface_ids[ys, xs], column)
    face_keys = p("key").astype(np.int32)  # which face each pixel shows, the same in every frame of a drive
    u, v, foot_u, foot_v = scene.cam.face_coordinates(xs, ys, p("axis") == 0, p("plane"), p("u0"), p("udir"), p("v0"))
    rgb = photo[ys, xs]  # (N, 3): the flat, lit wall colour
    kind = p("kind")
    for code, paint in PATTERNS.items():
        rows = np.nonzero(kind == code)[0]
        if len(rows):
            rgb[rows] = paint(p, rows, (u[rows], v[rows], foot_u[rows], foot_v[rows]), rgb[rows], face_keys[rows])
    photo[ys, xs] = rgb


Coordinates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (u, v, foot_u, foot_v) of some pixels


def _windows(p: _Params, rows: np.ndarray, at: Coordinates, rgb: np.ndarray, key: np.ndarray) -> np.ndarray:
    """A grid of framed windows above the ground floor, each a little different; shop fronts; a darker cornice."""
    uu, vv, fu, fv = at
    spacing, floor_h = np.maximum(p("spacing", rows), 0.1), np.maximum(p("floor_h", rows), 0.1)
    win_w, win_h, u_start, v_first = p("win_w", rows), p("win_h", rows), p("u_start", rows), p("v_first", rows)
    inside = (uu > u_start - 0.2) & (uu < p("lu", rows) - 0.3) & (vv > v_first - 0.2) & (vv < p("lv", rows) - 0.6)
    du, dv = uu - u_start, vv - v_first
    glass = coverage(du, spacing, win_w / spacing, fu) * coverage(dv, floor_h, win_h / floor_h, fv) * inside
    framed = (
        coverage(du + 0.12, spacing, (win_w + 0.24) / spacing, fu)
        * coverage(dv + 0.15, floor_h, (win_h + 0.3) / floor_h, fv)
        * inside
        - glass
    )
    cell = (
        (np.floor(du / spacing).astype(np.int32) * 73856093)
        ^ (np.floor(dv / floor_h).astype(np.int32) * 19349663)
        ^ (key.astype(np.int32) * 83492791)
    )
    tone = np.float32(0.7) + np.float32(0.6 / 1023) * (cell & 1023).astype(np.float32)  # windows differ
    shop_w, ground = p("shop_w", rows), p("ground", rows)
    shop_period = np.maximum(shop_w + p("shop_gap", rows), 0.1)
    shop = (
        p("shop", rows) * (vv > 0.3) * (vv < ground - 0.6) * coverage(uu - 0.5, shop_period, shop_w / shop_period, fu)
    )
    band = (p("shop", rows) > 0) & (vv >= ground - 0.6) & (vv < ground - 0.1)
    out = rgb * (1 - framed[:, None]) + p.colour("frame", rows) * framed[:, None]
    out = out * (1 - glass[:, None]) + p.colour("glass", rows) * (glass * tone)[:, None]
    out = out * (1 - shop[:, None]) + p.colour("shop_glass", rows) * shop[:, None]
    out = np.where(band[:, None], p.colour("band", rows), out)
    out *= np.where(vv > p("lv", rows) - 0.45, np.float32(0.78), np.float32(1))[:, None]
    return out


def _bars(p: _Params, rows: np.ndarray, at: Coordinates, rgb: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Fence bars over the dark gaps between them, and two rails."""
    uu, vv, fu, _ = at
    bars = coverage(uu, np.maximum(p("step", rows), 0.05), 0.45, fu)[:, None]
    rails = (np.abs(vv - 0.15) < 0.06) | (np.abs(vv - p("lv", rows) + 0.12) < 0.06)
    bar = p.colour("bar", rows)
    return np.where(rails[:, None], bar * 0.85, rgb * (1 - bars) + bar * bars)


def _joints(p: _Params, rows: np.ndarray, at: Coordinates, rgb: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Mortar joints between courses of blocks, offset every other course, under a coping."""
    uu, vv, fu, fv = at
    course, block = np.maximum(p("course", rows), 0.05), np.maximum(p("block", rows), 0.05)
    offset = np.mod(np.floor(vv / course), 2) * block / 2
    joints = np.maximum(
        coverage(vv, course, 0.03 / course, fv),
        coverage(uu + offset, block, 0.03 / block, fu),
    )
    capped = (vv > p("lv", rows) - 0.08)[:, None]
    return np.where(capped, p.colour("cap", rows), rgb * (1 - 0.35 * joints[:, None]))


# surface kind -> its pattern: (params, rows, face coordinates, flat colours, face keys) -> patterned colours
PATTERNS: dict[int, Callable[..., np.ndarray]] = {WINDOWS: _windows, BARS: _bars, JOINTS: _joints}


def paving(scene: Scene, photo: np.ndarray, label: np.ndarray) -> None:
    """Joints between paving slabs on the sidewalks, in ground-plane metres (box-filtered like the windows)."""
    cam = scene.cam
    first = cam.first_ground_row
    ys, xs = np.nonzero(label[first:] == SIDEWALK)
    if len(ys) == 0:
        return
    ys = ys + first
    x, z, foot_x, foot_z = cam.ground_coordinates(xs, ys)
    length, width = scene.street.slab
    joints = np.maximum(coverage(z, length, 0.04 / length, foot_z), coverage(x, width, 0.04 / width, foot_x))
    photo[ys, xs] *= (1 - 0.35 * joints)[:, None].astype(np.float32)
