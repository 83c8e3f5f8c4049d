"""The props: everything that stands on the street layout, as functions over a ``Scene``.

Each module places its props with the scene's dice and either draws them at once (things behind the street:
frontages, the far end) or queues them by depth (things standing in the street), so the painter's order
comes out right whatever order they were placed in.
"""

from __future__ import annotations

from cityseg.synth.props.buildings import buildings, far_end, park
from cityseg.synth.props.furniture import street_furniture
from cityseg.synth.props.people import people
from cityseg.synth.props.vehicles import ego_bonnet, traffic

FRONTAGES = {"buildings": buildings, "park": park}  # Side.kind -> what lines that side of the street

__all__ = ["FRONTAGES", "ego_bonnet", "far_end", "people", "street_furniture", "traffic"]
