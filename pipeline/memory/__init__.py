"""How much memory each preset needs, and the fastest way it fits a given machine.

``footprint`` holds what was counted on the `meta` device (weights per component, activation
peaks at the default clip); ``planner`` turns that into a placement for a GPU and host RAM;
``machine`` reads this machine's. No torch at import: the bot and the CLI read plans cheaply.
"""

from pipeline.memory.footprint import (
    ComponentFootprint,
    Footprint,
    footprint_for,
    footprints,
)
from pipeline.memory.planner import (
    GIB,
    LADDER,
    MemoryPlan,
    Need,
    Tier,
    need_for,
    plan,
)

__all__ = [
    "GIB",
    "LADDER",
    "ComponentFootprint",
    "Footprint",
    "MemoryPlan",
    "Need",
    "Tier",
    "footprint_for",
    "footprints",
    "need_for",
    "plan",
]
