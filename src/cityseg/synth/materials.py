"""Materials: the colour palettes objects are painted from, per-class surface texture, and colour arithmetic.

Colours are RGB floats before lighting (0..255, may overshoot until written); one palette entry is picked
per object and jittered, so no two cars or facades are quite the same colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cityseg.synth.ids import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    TRUCK,
    UNLABELED,
    VEGETATION,
    WALL,
)

if TYPE_CHECKING:
    from cityseg.synth.dice import Dice

Colour = tuple[float, float, float]

# Material palettes (RGB before lighting); one is picked per object and jittered.
# fmt: off
ASPHALT = ((96, 96, 100), (110, 108, 106), (84, 86, 92), (122, 120, 118), (100, 96, 92))
PAVING = ((150, 146, 140), (168, 160, 150), (140, 128, 122), (176, 174, 170), (150, 120, 110))
PLASTER = ((196, 178, 150), (214, 208, 196), (150, 148, 144), (150, 84, 62), (206, 168, 104), (176, 190, 176),
           (190, 160, 160), (120, 116, 112), (222, 216, 200), (168, 150, 128), (110, 70, 58))
ROOFING = ((110, 60, 50), (70, 70, 76), (120, 80, 60))
GLASS = ((34, 40, 52), (52, 60, 70), (26, 28, 34), (70, 84, 100))
SHOP_SIGN = ((160, 40, 40), (40, 60, 120), (60, 60, 60), (200, 180, 150), (40, 90, 60))
FOLIAGE = ((58, 86, 34), (46, 74, 30), (72, 96, 40), (40, 64, 36), (84, 100, 46))
BARK = ((80, 70, 60), (100, 92, 80), (60, 54, 48))
GRASS = ((112, 132, 66), (100, 124, 58), (132, 138, 78), (118, 140, 80), (140, 130, 82))
WALL_STONE = ((170, 166, 156), (140, 132, 120), (150, 96, 80), (120, 120, 116))
FENCE_PAINT = ((60, 62, 58), (90, 70, 50), (40, 56, 46), (130, 130, 126))
CAR_PAINT = ((205, 205, 210), (165, 168, 172), (30, 32, 36), (72, 74, 80), (30, 50, 110), (140, 24, 24),
             (28, 64, 44), (200, 190, 160), (90, 110, 140), (220, 220, 216), (120, 40, 40), (48, 48, 60))
TRUCK_PAINT = ((222, 222, 218), (190, 192, 196), (200, 60, 40), (40, 80, 150), (60, 110, 70), (230, 190, 60),
               (150, 150, 150))
BUS_PAINT = ((232, 210, 60), (225, 225, 215), (190, 40, 40), (40, 90, 170), (70, 140, 90), (235, 235, 225))
CLOTHES = ((30, 32, 40), (50, 50, 56), (70, 60, 50), (150, 30, 40), (40, 60, 110), (200, 200, 195), (120, 110, 90),
           (60, 90, 60), (180, 150, 110), (90, 40, 90), (25, 25, 25), (140, 90, 60))
CYCLING_WEAR = ((200, 230, 40), (240, 120, 20), (220, 40, 30), (30, 90, 200), (20, 20, 22), (240, 240, 235))
TROUSERS = ((30, 34, 50), (40, 50, 80), (24, 24, 24), (70, 70, 72), (120, 100, 80), (60, 70, 90))
SKIN = ((226, 190, 160), (200, 152, 120), (160, 110, 80), (110, 74, 54))
HAIR = ((30, 24, 20), (70, 48, 30), (160, 130, 80), (120, 120, 120), (20, 20, 20))
HELMET = ((230, 230, 230), (200, 40, 40), (30, 30, 30), (40, 90, 200))
METAL = ((120, 124, 128), (88, 92, 96), (150, 152, 150), (56, 70, 60), (46, 46, 50))
BIKE_PAINT = ((30, 30, 30), (160, 30, 30), (30, 60, 140), (200, 200, 200), (40, 90, 60))
LIGHT_HOUSING = ((30, 32, 30), (44, 46, 40), (60, 60, 56))
TYRE, RIM, LAMP_OFF = (26, 26, 28), (120, 122, 126), (36, 36, 36)
TAIL_LAMP, HEAD_LAMP, PLATE = (150, 20, 20), (225, 225, 210), (225, 225, 220)
SIGNAL_LAMPS = ((255, 50, 40), (255, 180, 30), (60, 255, 140))  # red, amber, green
SIGN_COLOURS = {  # traffic sign kind -> (rim, face, symbol)
    "prohibit": ((200, 30, 30), (235, 235, 230), (40, 40, 40)),
    "mandatory": ((30, 70, 170), (30, 70, 170), (240, 240, 240)),
    "stop": ((200, 20, 25), (200, 20, 25), (245, 245, 245)),
    "warning": ((200, 30, 30), (240, 240, 235), (30, 30, 30)),
    "priority": ((240, 240, 235), (240, 200, 20), (240, 200, 20)),
    "info": ((240, 240, 240), (30, 80, 160), (240, 240, 240)),
}
# fmt: on


def _texture_table(values: dict[int, float]) -> np.ndarray:
    table = np.zeros(256, dtype=np.float32)
    for label_id, amount in values.items():
        table[label_id] = amount
    return table


# Relative brightness variation per class at three scales: blotches (~1/10 image), grain (~3 px), pixel noise.
# They give each class a characteristic surface: smooth sky and paint, grainy asphalt, leafy vegetation.
# fmt: off
TEXTURE_BLOTCH = _texture_table({ROAD: 0.06, SIDEWALK: 0.06, BUILDING: 0.08, WALL: 0.08, FENCE: 0.04,
                                 VEGETATION: 0.22, TERRAIN: 0.14, SKY: 0.05, CAR: 0.03, TRUCK: 0.04, BUS: 0.03,
                                 UNLABELED: 0.04})
TEXTURE_GRAIN = _texture_table({ROAD: 0.04, SIDEWALK: 0.05, BUILDING: 0.03, WALL: 0.08, FENCE: 0.06,
                                VEGETATION: 0.42, TERRAIN: 0.2, PERSON: 0.05, RIDER: 0.05, POLE: 0.02})
TEXTURE_PIXEL = _texture_table({ROAD: 0.08, SIDEWALK: 0.06, BUILDING: 0.03, WALL: 0.06, FENCE: 0.05,
                                VEGETATION: 0.14, TERRAIN: 0.14, SKY: 0.008, PERSON: 0.04, RIDER: 0.04, CAR: 0.02,
                                TRUCK: 0.02, BUS: 0.02, POLE: 0.03, TRAFFIC_LIGHT: 0.03, TRAFFIC_SIGN: 0.02,
                                BICYCLE: 0.03})
# fmt: on
IS_GROUND = np.zeros(256, dtype=bool)  # surfaces that take cast shadows and per-row distance haze
IS_GROUND[[ROAD, SIDEWALK, TERRAIN]] = True


def rgb(colour: Sequence[float]) -> tuple[int, int, int]:
    """A float colour rounded and clipped to the 0..255 ints that ``PIL.ImageDraw`` fills with."""
    r, g, b = (min(255, max(0, int(c + 0.5))) for c in colour)
    return (r, g, b)


def scale(colour: Sequence[float], k: float) -> Colour:
    return (colour[0] * k, colour[1] * k, colour[2] * k)


def mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    """``a`` blended toward ``b`` by ``t`` (0 is ``a``, 1 is ``b``); works on points as well as colours."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def pick(dice: Dice, palette: Sequence[Sequence[float]], jitter: float = 0.08) -> Colour:
    """One palette entry, brightened or darkened as a whole and per channel by up to ``jitter``."""
    base = dice.choice(palette)
    k = dice.uniform(1 - jitter, 1 + jitter)
    return (
        base[0] * k * dice.uniform(1 - jitter, 1 + jitter),
        base[1] * k * dice.uniform(1 - jitter, 1 + jitter),
        base[2] * k * dice.uniform(1 - jitter, 1 + jitter),
    )
