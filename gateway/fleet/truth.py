"""Ground truth of a simulated vehicle per UTC day: what its frames only sample. Pure.

A :class:`TruthMeter` hangs on a :class:`~gateway.fleet.model.Vehicle` (``vehicle.meter``) and
integrates every physics sub-step (1 s): distance from the odometer, time driven, and the pack's
energy split as the analytics job splits it (``gateway.lake.daily``): out of the pack is *used*;
into it while charging is *charged*, while driving *regenerated*. A charge session is counted on
each day it charges on, so a session across midnight counts once on either side, as a job that
sees one day at a time must count it. Each sub-step belongs to the day its end falls on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from gateway.fleet.model import Mode, Vehicle

_J_PER_KWH = 3_600_000.0


@dataclass(slots=True)
class DayTruth:
    """One vehicle's day, exactly (the physics' own values, not the frames' rounded ones)."""

    distance_km: float = 0.0
    driving_s: float = 0.0
    energy_used_kwh: float = 0.0
    energy_regen_kwh: float = 0.0
    energy_charged_kwh: float = 0.0
    charge_sessions: int = 0
    fast_charge_sessions: int = 0
    charging_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class TruthMeter:
    """Integrates one vehicle's sub-steps into :class:`DayTruth` by UTC date (``YYYY-MM-DD``)."""

    def __init__(self, vehicle: Vehicle) -> None:
        self.days: dict[str, DayTruth] = {}
        self._odometer_km = vehicle.odometer_km
        self._was_charging = False
        self._day = ""
        self._day_ends = -1.0  # Unix time where ``_day`` ends
        vehicle.meter = self

    def __call__(self, vehicle: Vehicle, t: float, dt: float) -> None:
        if t >= self._day_ends or t < self._day_ends - 86_400:
            start = int(t // 86_400) * 86_400
            self._day = time.strftime("%Y-%m-%d", time.gmtime(start))
            self._day_ends = start + 86_400.0
            new_day = True
        else:
            new_day = False
        day = self.days.get(self._day)
        if day is None:
            day = self.days[self._day] = DayTruth()
        day.distance_km += vehicle.odometer_km - self._odometer_km
        self._odometer_km = vehicle.odometer_km
        mode = vehicle.mode
        power_w = vehicle.current_a * vehicle.pack_voltage_v  # + = into the pack
        if power_w < 0:
            day.energy_used_kwh -= power_w * dt / _J_PER_KWH
        elif mode is Mode.CHARGING:
            day.energy_charged_kwh += power_w * dt / _J_PER_KWH
        else:
            day.energy_regen_kwh += power_w * dt / _J_PER_KWH
        if mode is Mode.DRIVING:
            day.driving_s += dt
        charging = mode is Mode.CHARGING
        if charging:
            day.charging_s += dt
            if not self._was_charging or new_day:
                day.charge_sessions += 1
                day.fast_charge_sessions += vehicle.fast_charge
        self._was_charging = charging
