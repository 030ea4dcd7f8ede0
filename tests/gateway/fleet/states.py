"""Vehicle states for tests: many cars over an hour, so driving, regen, charging and fix loss
all occur."""

from __future__ import annotations

import random

from gateway.fleet.model import Vehicle, VehicleState

T0 = 1_750_000_000.0  # 2025-06-15 UTC
IMEI = "356307042441013"


def fleet_states(seeds: range, seconds: int = 3_600, every_s: int = 7) -> list[VehicleState]:
    states: list[VehicleState] = []
    for seed in seeds:
        vehicle = Vehicle(random.Random(seed), T0, faults_per_min=0.5)
        states.extend(vehicle.step(T0 + t) for t in range(every_s, seconds, every_s))
    return states


# Among these cars some start at an AC and some at a DC charger.
STATES = fleet_states(range(0, 25, 3))
