"""The official label ids a synthetic scene draws, by name (``classes`` is their single source)."""

from __future__ import annotations

from cityseg.classes import LABEL_BY_NAME

UNLABELED = LABEL_BY_NAME["unlabeled"].id
ROAD = LABEL_BY_NAME["road"].id
SIDEWALK = LABEL_BY_NAME["sidewalk"].id
BUILDING = LABEL_BY_NAME["building"].id
WALL = LABEL_BY_NAME["wall"].id
FENCE = LABEL_BY_NAME["fence"].id
POLE = LABEL_BY_NAME["pole"].id
TRAFFIC_LIGHT = LABEL_BY_NAME["traffic light"].id
TRAFFIC_SIGN = LABEL_BY_NAME["traffic sign"].id
VEGETATION = LABEL_BY_NAME["vegetation"].id
TERRAIN = LABEL_BY_NAME["terrain"].id
SKY = LABEL_BY_NAME["sky"].id
PERSON = LABEL_BY_NAME["person"].id
RIDER = LABEL_BY_NAME["rider"].id
CAR = LABEL_BY_NAME["car"].id
TRUCK = LABEL_BY_NAME["truck"].id
BUS = LABEL_BY_NAME["bus"].id
BICYCLE = LABEL_BY_NAME["bicycle"].id

# fmt: off
DRAWN_IDS = (UNLABELED, ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION,
             TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE)  # every id a scene can contain
# fmt: on
