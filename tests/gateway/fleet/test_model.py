"""The vehicle model: deterministic, physically plausible, inside Bengaluru, faults on demand."""

from __future__ import annotations

import itertools
import random

import pytest

from gateway.fleet.model import (
    BOX,
    LOW_SOC,
    OVERTEMP_C,
    FaultKind,
    Mode,
    Vehicle,
    VehicleState,
    ocv,
)
from tests.gateway.fleet.states import T0


def drive(vehicle: Vehicle, seconds: int, step_s: float = 1.0) -> list[VehicleState]:
    return [vehicle.step(T0 + (i + 1) * step_s) for i in range(int(seconds / step_s))]


def test_same_seed_same_states_whatever_the_step() -> None:
    a = Vehicle(random.Random(42), T0, faults_per_min=1.0)
    b = Vehicle(random.Random(42), T0, faults_per_min=1.0)
    assert drive(a, 600) == drive(b, 600)
    c = Vehicle(random.Random(43), T0)
    assert c.step(T0 + 1) != Vehicle(random.Random(42), T0).step(T0 + 1)


def test_soc_and_position_stay_in_bounds() -> None:
    south, north, west, east = BOX
    for seed in range(12):
        vehicle = Vehicle(random.Random(seed), T0, faults_per_min=0.2)
        for state in (vehicle.step(T0 + t) for t in range(5, 4 * 3600, 5)):
            assert 0.0 <= state.soc_pct <= 100.0
            assert south <= state.lat <= north
            assert west <= state.lon <= east
            assert 0 <= state.heading_deg < 360
            assert state.speed_kmh >= 0
            assert state.cell_v_min_mv <= state.cell_v_max_mv
            assert state.cell_t_min_c <= state.cell_t_max_c


def test_driving_drains_about_0_15_pct_per_km_and_draws_current() -> None:
    used = km = 0.0
    for seed in range(10):
        vehicle = Vehicle(random.Random(seed), T0)
        vehicle.soc_pct = 80.0
        vehicle.mode = Mode.DRIVING
        last = vehicle.step(T0)
        for t in range(1, 1800):
            state = vehicle.step(T0 + t)
            if last.ignition and state.ignition:
                used += last.soc_pct - state.soc_pct
                km += state.odometer_km - last.odometer_km
                if state.speed_kmh > last.speed_kmh + 1:  # accelerating
                    assert state.pack_current_a < 0
                if state.regen:
                    assert state.pack_current_a > 0  # braking charges the pack
            last = state
    assert km > 50
    assert used / km == pytest.approx(0.15, rel=0.2)


def test_the_driver_accelerates_and_brakes_smoothly() -> None:
    # Second by second, as a car's 1 Hz log: comfortable accelerations, finite jerk (the foot
    # and the torque ramp lag the wish), so power follows speed over seconds, never in one step.
    moving = 0
    for seed in range(6):
        vehicle = Vehicle(random.Random(seed), T0)
        vehicle.mode = Mode.DRIVING
        states = drive(vehicle, 3600)
        accel = [
            ((b.speed_kmh - a.speed_kmh) / 3.6, a.ignition and b.ignition and b.speed_kmh > 0)
            for a, b in itertools.pairwise(states)
        ]
        for (before, _), (now, moves) in itertools.pairwise(accel):
            if moves:
                moving += 1
                assert -2.0 <= now <= 1.5
                assert abs(now - before) <= 1.2  # m/s^3
    assert moving > 2 * 3600


def test_a_charger_ramps_its_current_up() -> None:
    vehicle = Vehicle(random.Random(1), T0)
    vehicle.soc_pct = 15.0
    vehicle.mode = Mode.PARKED
    currents = [s.pack_current_a for s in drive(vehicle, 60) if s.charging]
    assert currents[0] == 0 < currents[1] < currents[-1] / 10  # (it plugs in, then ramps)
    ramp = currents[:31]  # 30 s, then constant power (the current eases as the voltage rises)
    assert ramp == sorted(ramp) and min(currents[30:]) == pytest.approx(ramp[-1], rel=0.01)


def test_low_soc_goes_charging_until_about_90() -> None:
    vehicle = Vehicle(random.Random(7), T0)
    vehicle.soc_pct = LOW_SOC - 0.5
    vehicle.mode = Mode.DRIVING
    t = 0
    while not vehicle.step(T0 + t).charging:
        t += 1
        assert t < 3600, "a car below 20 % looks for a charger at its next stop"
    vehicle.fast_charge = True  # a DC charger, so that the test sees it through
    states = [vehicle.step(T0 + t + dt) for dt in range(10, 3 * 3600, 10)]
    charging = [s for s in states if s.charging]
    assert all(s.pack_current_a > 0 and not s.ignition and s.speed_kmh == 0 for s in charging)
    socs = [s.soc_pct for s in charging]
    assert socs == sorted(socs)
    assert 87.5 <= socs[-1] < 93.0
    assert not states[-1].charging, "charged, it parks and drives on"


def test_dc_charging_heats_the_cells_and_tapers_above_80() -> None:
    vehicle = Vehicle(random.Random(1), T0)
    vehicle.soc_pct = 15.0
    vehicle.mode = Mode.PARKED
    first = vehicle.step(T0 + 1)
    vehicle.fast_charge = True
    states = [vehicle.step(T0 + t) for t in range(2, 2 * 3600)]
    fast = [s for s in states if s.fast_charge]
    assert first.charging and fast
    assert max(s.cell_t_max_c for s in fast) > first.cell_t_max_c + 5
    bulk = max(s.pack_current_a for s in fast if s.soc_pct < 75)
    late = max(s.pack_current_a for s in fast if s.soc_pct > 87)
    assert bulk > 100 and late < bulk / 2


def test_pack_voltage_follows_soc() -> None:
    assert ocv(0) < ocv(20) < ocv(50) < ocv(80) < ocv(100) == pytest.approx(4.18)
    low = Vehicle(random.Random(1), T0)
    low.soc_pct = 10.0
    high = Vehicle(random.Random(1), T0)
    high.soc_pct = 95.0
    low.mode = high.mode = Mode.PARKED
    assert low.step(T0 + 1).pack_voltage_v < high.step(T0 + 1).pack_voltage_v


def test_fault_episodes_come_at_the_asked_rate() -> None:
    rate_per_min = 0.05
    hours = 20
    faults = []
    for seed in range(hours):
        vehicle = Vehicle(random.Random(seed), T0, faults_per_min=rate_per_min)
        for state in drive(vehicle, 3600, step_s=2.0):
            for fault in state.faults:
                faults.append(fault)
                if fault.kind is FaultKind.BATTERY_OVERTEMP:
                    assert state.cell_t_max_c >= OVERTEMP_C
                    assert fault.value >= OVERTEMP_C
    expected = rate_per_min * 60 * hours
    assert expected * 0.6 < len(faults) < expected * 1.4
    overtemp = sum(f.kind is FaultKind.BATTERY_OVERTEMP for f in faults)
    assert 0.5 < overtemp / len(faults) < 0.9
    assert all(f.severity == 2 for f in faults)


def test_no_faults_unless_asked() -> None:
    vehicle = Vehicle(random.Random(5), T0)
    assert not any(s.faults or s.cell_t_max_c >= OVERTEMP_C for s in drive(vehicle, 3600, 5.0))
