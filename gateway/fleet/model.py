"""A simulated electric car in Bengaluru: route, motion, battery, thermals and injected faults.

Pure: no I/O and no clock. The caller passes the time (``now``, Unix seconds) and a seeded
``random.Random``, so a vehicle built from the same seed at the same start time replays exactly.

The physics is deliberately small but keeps the relations a telemetry consumer looks at: a driver
follows the traffic's speed with a smooth, jerk-limited acceleration (``_drive``), pack current
follows the road load (acceleration, rolling resistance, drag; positive = charging, as in EVB1),
regenerative braking returns current, SoC integrates the current, cell voltages follow the
open-circuit curve plus the IR drop, and cell and motor temperatures move towards a load-dependent
target with a first-order lag.
"""

from __future__ import annotations

import enum
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

# Bengaluru, roughly inside the outer ring: (south, north, west, east) in degrees.
BOX = (12.85, 13.10, 77.45, 77.75)
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0  # times cos(latitude)
_ALTITUDE_M = 900.0  # the city sits at 880-960 m

# A 96s NMC pack of about 70 kWh (351 V nominal). With the road load below a city drive uses
# about 0.15 % of it per km (the figure the simulator is asked to reproduce).
CELLS = 96
_CAPACITY_AH = 200.0
_CELL_OHMS = 0.0012  # per series cell: ~0.115 ohm for the pack
# Open-circuit voltage of an NMC cell against SoC (%), piecewise linear.
_OCV = ((0.0, 3.30), (10.0, 3.55), (20.0, 3.62), (40.0, 3.72), (60.0, 3.85), (80.0, 4.00))
_OCV_FULL = (100.0, 4.18)

# Road load of a compact car.
_MASS_KG = 1_500.0
_GRAVITY = 9.81
_ROLLING = 0.012
_DRAG_AREA = 0.7  # Cd x frontal area, m^2
_AIR = 1.2  # kg/m^3
_DRIVE_EFFICIENCY = 0.90
_REGEN_EFFICIENCY = 0.65
_REGEN_MIN_W = 1_000.0  # below this the flag would flicker at every coast
_AUX_W = 400.0  # air conditioning and electronics, with the ignition on
# The driver, as a real car's 1 Hz log shows one: the wish is to close the gap to the traffic's
# speed over _SPEED_TAU_S (at most 1.5 m/s^2 either way: 0-45 km/h takes about 16 s, a stop
# from 50 km/h about 20 s, most of its regeneration in the first 10), the foot follows that
# wish over _PEDAL_TAU_S and the motor's torque ramp follows the pedal over _TORQUE_TAU_S. The
# two lags hold jerk to about 1 m/s^3, so power follows speed over seconds instead of jumping at
# every change of traffic. Truth integrates this power at the 1 s sub-step (``truth.py``).
_ACCEL_MAX = 1.5  # m/s^2
_BRAKE = 1.5
_SPEED_TAU_S = 8.0
_PEDAL_TAU_S = 1.0
_TORQUE_TAU_S = 1.0
# Braking for a waypoint (a turn, a stop) begins when stopping there needs _BRAKE_FROM and
# holds the deceleration that stops exactly there, up to _DECEL_MAX.
_BRAKE_FROM = 1.0
_DECEL_MAX = 3.0
_HALT = 0.3  # m/s^2, the least deceleration of a stop: nobody creeps up to a red light
_WHEEL_RADIUS_M = 0.31
_GEAR_RATIO = 9.1

# Charging: parked below LOW_SOC, until about 90 %. 7.2 kW AC wallbox or a 50 kW DC charger.
LOW_SOC = 20.0
_AC_W = 7_200.0
_DC_W = 50_000.0
_TAPER_FROM_SOC = 80.0
_CHARGE_RAMP_S = 30.0  # after the handshake a charger ramps its current up, it does not switch it

# Thermal lags and gains: cells heat with the current, the motor with its mechanical power.
_CELL_TAU_S = 300.0
_CELL_C_PER_A = 0.08
_MOTOR_TAU_S = 120.0
_MOTOR_C_PER_KW = 1.2

OVERTEMP_C = 60.0  # the gateway's battery_overtemp rule fires at cell_temp_max_c >= 60
_MAX_STEP_S = 1.0  # physics sub-step
_MAX_CATCH_UP_S = 3_600.0  # a longer gap is not simulated second by second


class Mode(enum.Enum):
    DRIVING = "driving"
    PARKED = "parked"
    CHARGING = "charging"


class FaultKind(enum.Enum):
    BATTERY_OVERTEMP = "battery_overtemp"
    ISOLATION = "isolation"


class Severity(enum.IntEnum):
    """EVB1 FAULT severities (codecs/evb1.md)."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2


class Subsystem(enum.IntEnum):
    """EVB1 FAULT subsystems."""

    TCU = 0
    BMS = 1
    MCU = 2
    CHARGER = 3
    THERMAL = 4


# EVB1 fault code and subsystem of each kind; both are critical.
FAULT_CODES: dict[FaultKind, tuple[int, Subsystem]] = {
    FaultKind.BATTERY_OVERTEMP: (0x0101, Subsystem.THERMAL),
    FaultKind.ISOLATION: (0x0102, Subsystem.BMS),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault episode that began. ``value``: peak cell temperature (degC) or isolation (kohm)."""

    kind: FaultKind
    ts: float
    code: int
    severity: Severity
    subsystem: Subsystem
    value: int


@dataclass(frozen=True, slots=True)
class VehicleState:
    """What the telematics unit reads at one instant. ``faults`` began since the last state."""

    ts: float
    lat: float
    lon: float
    alt_m: float
    speed_kmh: float
    heading_deg: int
    satellites: int
    gps_valid: bool
    soc_pct: float
    soh_pct: int
    pack_voltage_v: float
    pack_current_a: float
    cell_v_min_mv: int
    cell_v_max_mv: int
    cell_t_min_c: float
    cell_t_max_c: float
    motor_rpm: int
    motor_temp_c: float
    odometer_km: float
    aux_voltage_v: float
    rssi_dbm: int
    ignition: bool
    charging: bool
    regen: bool
    fast_charge: bool
    faults: tuple[Fault, ...] = ()


def ocv(soc_pct: float) -> float:
    """Open-circuit voltage of one cell at this SoC."""
    points = (*_OCV, _OCV_FULL)
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        if soc_pct <= s1:
            return v0 + (v1 - v0) * (max(soc_pct, s0) - s0) / (s1 - s0)
    return _OCV_FULL[1]


class Vehicle:
    """One car. :meth:`step` advances it to ``now`` and returns its state."""

    def __init__(self, rng: random.Random, now: float, *, faults_per_min: float = 0.0) -> None:
        self._rng = rng
        self._t = now
        self._fault_rate_per_s = max(0.0, faults_per_min) / 60.0
        south, north, west, east = BOX
        self.lat = rng.uniform(south + 0.01, north - 0.01)
        self.lon = rng.uniform(west + 0.01, east - 0.01)
        self._fix = (self.lat, self.lon)
        self.odometer_km = rng.uniform(500.0, 60_000.0)
        self.soh_pct = rng.randint(88, 100)
        self._ambient_c = rng.uniform(22.0, 32.0)
        self._offsets_mv = [max(-20, min(20, round(rng.gauss(0.0, 6.0)))) for _ in range(CELLS)]
        self._spread_mv = (min(self._offsets_mv), max(self._offsets_mv))
        # Read at every physics sub-step: summed once, not 96 cells a step.
        self._offsets_v = sum(self._offsets_mv) / 1000.0
        self.speed_ms = 0.0
        self._accel_ms2 = 0.0
        self._pedal_ms2 = 0.0
        self.heading = rng.uniform(0.0, 2 * math.pi)
        self.current_a = 0.0
        self.cell_temp_c = self._ambient_c + rng.uniform(0.0, 3.0)
        self.motor_temp_c = self._ambient_c + rng.uniform(0.0, 5.0)
        self._mech_kw = 0.0
        self.regen = False
        self.fast_charge = False
        self._target_ms = 0.0
        self._target_left_s = 0.0
        self._dwell_s = 0.0
        self._charge_to = 90.0
        self._charging_s = 0.0
        self._waypoint = self._next_waypoint()
        self._braking = False
        # A few cars start the run at a charger, the rest are driving or parked.
        if rng.random() < 0.15:
            self.soc_pct = rng.uniform(8.0, LOW_SOC - 1.0)
            self._start_charging()
        else:
            self.soc_pct = rng.uniform(25.0, 95.0)
            self.mode = Mode.DRIVING if rng.random() < 0.7 else Mode.PARKED
            self._dwell_s = rng.uniform(5.0, 120.0)
        self._satellites = rng.randint(7, 14)
        self._gps_lost_s = 0.0
        self._rssi = rng.randint(-95, -60)
        self._episode_s = 0.0
        self._episode_peak_c = 0.0
        self._new_faults: list[Fault] = []
        self.cell_v_mean = ocv(self.soc_pct)
        # Called after every physics sub-step with its end time and length: ground truth for
        # analytics (``gateway.fleet.truth``) integrates what the frames only sample.
        self.meter: Callable[[Vehicle, float, float], None] | None = None

    @property
    def pack_voltage_v(self) -> float:
        return self.cell_v_mean * CELLS + self._offsets_v

    def step(self, now: float) -> VehicleState:
        """Advance the physics to ``now`` (1 s sub-steps) and return the state there."""
        elapsed = min(now - self._t, _MAX_CATCH_UP_S)
        if elapsed > 0:
            steps = math.ceil(elapsed / _MAX_STEP_S)
            dt = elapsed / steps
            for _ in range(steps):
                self._t += dt
                self._advance(dt)
        self._t = max(self._t, now)
        return self.state()

    def state(self) -> VehicleState:
        """The current state; faults begun since the previous call are reported once."""
        faults = tuple(self._new_faults)
        self._new_faults.clear()
        gps_valid = self._gps_lost_s <= 0.0
        if gps_valid:
            self._fix = (self.lat, self.lon)
        lat, lon = self._fix
        low_mv, high_mv = self._spread_mv
        mean_mv = self.cell_v_mean * 1000.0
        current = abs(self.current_a)
        t_max = self.cell_temp_c + 1.5 + 0.012 * current
        if self._episode_peak_c:
            t_max = max(t_max, self._episode_peak_c)
        charging = self.mode is Mode.CHARGING
        ignition = self.mode is Mode.DRIVING
        return VehicleState(
            ts=self._t,
            lat=lat,
            lon=lon,
            alt_m=_ALTITUDE_M + 60.0 * (lat - BOX[0]) / (BOX[1] - BOX[0]),
            speed_kmh=self.speed_ms * 3.6,
            heading_deg=round(math.degrees(self.heading)) % 360,
            satellites=self._satellites if gps_valid else 0,
            gps_valid=gps_valid,
            soc_pct=self.soc_pct,
            soh_pct=self.soh_pct,
            pack_voltage_v=self.pack_voltage_v,
            pack_current_a=self.current_a,
            cell_v_min_mv=round(mean_mv + low_mv),
            cell_v_max_mv=round(mean_mv + high_mv),
            cell_t_min_c=self.cell_temp_c - 0.8 - 0.004 * current,
            cell_t_max_c=t_max,
            motor_rpm=round(self.speed_ms / (2 * math.pi * _WHEEL_RADIUS_M) * 60 * _GEAR_RATIO),
            motor_temp_c=self.motor_temp_c,
            odometer_km=self.odometer_km,
            aux_voltage_v=14.2 if ignition or charging else 12.6,
            rssi_dbm=self._rssi,
            ignition=ignition,
            charging=charging,
            regen=self.regen,
            fast_charge=charging and self.fast_charge,
            faults=faults,
        )

    def cell_voltages_mv(self) -> list[int]:
        """Every series cell's voltage, as the BMS reports it in a CELLS frame."""
        mean_mv = self.cell_v_mean * 1000.0
        return [round(mean_mv + offset) for offset in self._offsets_mv]

    def _advance(self, dt: float) -> None:
        self.regen = False
        self._mech_kw = 0.0
        if self.mode is Mode.DRIVING:
            self._drive(dt)
        elif self.mode is Mode.CHARGING:
            self._charge(dt)
        else:
            self.current_a = 0.0
            self._dwell_s -= dt
            if self.soc_pct < LOW_SOC:
                self._start_charging()  # parked at a charger
            elif self._dwell_s <= 0:
                self.mode = Mode.DRIVING
        self.soc_pct = min(
            100.0, max(0.0, self.soc_pct + self.current_a * dt / 36.0 / _CAPACITY_AH)
        )
        self.cell_v_mean = ocv(self.soc_pct) + self.current_a * _CELL_OHMS
        self._thermal(dt)
        if self._fault_rate_per_s:
            self._faults(dt)
        self._radio(dt)
        if self.meter is not None:
            self.meter(self, self._t, dt)

    def _drive(self, dt: float) -> None:
        rng = self._rng
        self._target_left_s -= dt
        if self._target_left_s <= 0:
            # Traffic: a red light or a jam now and then, otherwise a flow of 15-55 km/h.
            stop = rng.random() < 0.15
            self._target_ms = 0.0 if stop else rng.uniform(15.0, 55.0) / 3.6
            self._target_left_s = rng.uniform(10.0, 60.0) if stop else rng.uniform(8.0, 40.0)
        to_lat, to_lon = self._waypoint
        north_m = (to_lat - self.lat) * _M_PER_DEG_LAT
        east_m = (to_lon - self.lon) * _M_PER_DEG_LON * math.cos(math.radians(self.lat))
        distance = math.hypot(north_m, east_m)
        if distance > 1.0:
            self.heading = math.atan2(east_m, north_m) % (2 * math.pi)
        v0 = self.speed_ms
        # The distance covered while foot and torque catch up is not there to brake in.
        braking_m = max(1.0, distance - v0 * (_PEDAL_TAU_S + _TORQUE_TAU_S))
        # Never aim faster than what still stops gently at the waypoint (a turn or a stop).
        target = min(self._target_ms, math.sqrt(2.0 * _BRAKE_FROM * braking_m))
        wish = (target - v0) / _SPEED_TAU_S
        if self._target_ms == 0.0 and v0 > 0.0:
            wish = min(wish, -_HALT)
        # Brake for the waypoint at the deceleration that stops exactly there, once that is firm
        # enough to begin, and until the car gets there.
        need = v0 * v0 / (2.0 * braking_m)
        self._braking = self._braking or need >= _BRAKE_FROM
        if self._braking:
            wish = max(-_DECEL_MAX, min(wish, -need))
        else:
            wish = max(-_BRAKE, min(_ACCEL_MAX, wish))
        self._pedal_ms2 += (wish - self._pedal_ms2) * (1.0 - math.exp(-dt / _PEDAL_TAU_S))
        accel = self._accel_ms2
        accel += (self._pedal_ms2 - accel) * (1.0 - math.exp(-dt / _TORQUE_TAU_S))
        v1 = max(0.0, v0 + accel * dt)
        if v1 == 0.0:  # the brake holds the car; short of the waypoint, it sets off again
            self._accel_ms2 = self._pedal_ms2 = 0.0
            self._braking = False
        else:
            self._accel_ms2 = accel
        accel = (v1 - v0) / dt  # what the road load sees, a stop included
        travel = (v0 + v1) / 2 * dt
        if travel >= distance:
            travel = distance
            self.lat, self.lon = to_lat, to_lon
            self._arrive()
        else:
            self.lat += travel * math.cos(self.heading) / _M_PER_DEG_LAT
            self.lon += (
                travel
                * math.sin(self.heading)
                / (_M_PER_DEG_LON * math.cos(math.radians(self.lat)))
            )
        if self.mode is Mode.DRIVING:
            self.speed_ms = v1
        else:
            self.speed_ms = self._accel_ms2 = self._pedal_ms2 = 0.0
        self.odometer_km += travel / 1000.0
        v = (v0 + v1) / 2
        resist = (
            _MASS_KG * _GRAVITY * _ROLLING + 0.5 * _AIR * _DRAG_AREA * v * v if v > 0.1 else 0.0
        )
        wheel_w = (_MASS_KG * accel + resist) * v
        if wheel_w >= 0:
            battery_w = wheel_w / _DRIVE_EFFICIENCY + _AUX_W
        else:
            battery_w = wheel_w * _REGEN_EFFICIENCY + _AUX_W
            self.regen = wheel_w < -_REGEN_MIN_W
        self._mech_kw = abs(wheel_w) / 1000.0
        self.current_a = -battery_w / self.pack_voltage_v

    def _arrive(self) -> None:
        rng = self._rng
        self._braking = False
        self._waypoint = self._next_waypoint()
        if self.soc_pct < LOW_SOC:
            self._start_charging()
        elif rng.random() < 0.25:
            self.mode = Mode.PARKED
            self._dwell_s = rng.uniform(30.0, 600.0)

    def _next_waypoint(self) -> tuple[float, float]:
        """A point 0.3-3 km away, clamped into the box (legs between points stay inside it)."""
        rng = self._rng
        distance = rng.uniform(300.0, 3_000.0)
        bearing = rng.uniform(0.0, 2 * math.pi)
        south, north, west, east = BOX
        lat = self.lat + distance * math.cos(bearing) / _M_PER_DEG_LAT
        lon = self.lon + distance * math.sin(bearing) / (
            _M_PER_DEG_LON * math.cos(math.radians(self.lat))
        )
        return min(north, max(south, lat)), min(east, max(west, lon))

    def _start_charging(self) -> None:
        self.mode = Mode.CHARGING
        self.speed_ms = 0.0
        self.fast_charge = self._rng.random() < 0.5
        self._charge_to = self._rng.uniform(88.0, 92.0)
        self._charging_s = 0.0

    def _charge(self, dt: float) -> None:
        self._charging_s += dt
        power_w = (_DC_W if self.fast_charge else _AC_W) * min(
            1.0, self._charging_s / _CHARGE_RAMP_S
        )
        if self.soc_pct > _TAPER_FROM_SOC:  # constant-voltage phase: the current tapers off
            power_w *= max(0.1, (95.0 - self.soc_pct) / (95.0 - _TAPER_FROM_SOC))
        self.current_a = power_w / self.pack_voltage_v
        if self.soc_pct >= self._charge_to:
            self.mode = Mode.PARKED
            self.fast_charge = False
            self.current_a = 0.0
            self._dwell_s = self._rng.uniform(30.0, 300.0)

    def _thermal(self, dt: float) -> None:
        cell_target = self._ambient_c + _CELL_C_PER_A * abs(self.current_a)
        self.cell_temp_c += (cell_target - self.cell_temp_c) * min(1.0, dt / _CELL_TAU_S)
        motor_target = self._ambient_c + _MOTOR_C_PER_KW * self._mech_kw
        self.motor_temp_c += (motor_target - self.motor_temp_c) * min(1.0, dt / _MOTOR_TAU_S)

    def _faults(self, dt: float) -> None:
        rng = self._rng
        if self._episode_s > 0:
            self._episode_s -= dt
            if self._episode_s <= 0:
                self._episode_peak_c = 0.0
            return
        if rng.random() >= self._fault_rate_per_s * dt:
            return
        if rng.random() < 0.7:
            kind = FaultKind.BATTERY_OVERTEMP
            self._episode_peak_c = rng.uniform(OVERTEMP_C + 0.5, 68.0)
            self._episode_s = rng.uniform(20.0, 90.0)
            value = math.ceil(self._episode_peak_c)
        else:
            kind = FaultKind.ISOLATION
            self._episode_s = rng.uniform(10.0, 60.0)
            value = rng.randint(20, 90)  # kohm, under the ~100 ohm/V * 350 V limit
        code, subsystem = FAULT_CODES[kind]
        self._new_faults.append(Fault(kind, self._t, code, Severity.CRITICAL, subsystem, value))

    def _radio(self, dt: float) -> None:
        rng = self._rng
        if self._gps_lost_s > 0:
            self._gps_lost_s -= dt
        elif rng.random() < dt / 600.0:  # an underpass or an urban canyon every ~10 minutes
            self._gps_lost_s = rng.uniform(3.0, 15.0)
        if rng.random() < dt / 20.0:
            self._satellites = min(14, max(5, self._satellites + rng.choice((-1, 1))))
            self._rssi = min(-55, max(-105, self._rssi + rng.choice((-2, 2))))
