"""Fault notifications from parsed readings: protocol alarms and threshold rules, storm-controlled.

Pure code: the caller passes its monotonic clock (``now``, seconds) for hold times, reminders and
the rate limit, and its wall clock (``now_wall_ms``) for ``detected_at``. Nothing here reads a
clock or does I/O, so the engine runs inline on every record and tests drive it with a fake clock.

Per device and rule the engine keeps a tiny state machine::

    idle --condition true--> pending --held hold_s--> open --condition false--> idle (clear)
                                                      open --reminder_s elapsed--> open (reminder)

Protocol alarms (EVB1 FAULT, GT06 alarm packets, Teltonika panic records) are events, not
conditions: each one at or above ``alarm_min_severity`` gives one ``open`` and never a ``clear``.

Storm control is one global token bucket over all notifications. A notification that finds the
bucket empty is still returned, marked ``suppressed=True`` and counted in
:attr:`NotificationEngine.suppressed`: the runtime records it but does not deliver it, so nothing
is silently dropped.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, get_args

import msgspec

from parser.records import Alarm, MetricValue, Reading, iso_ms

NOTIFICATION_SCHEMA: Final = "ev.notification/1"

Op = Literal[">=", ">", "<=", "<", "==", "!="]
Severity = Literal["info", "warning", "critical"]
State = Literal["open", "reminder", "clear"]

OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
SEVERITIES: Final[tuple[str, ...]] = get_args(Severity)
_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES)}
_RULE_KEYS: Final = frozenset(
    {"code", "metric", "op", "threshold", "hold_s", "severity", "clear_threshold"}
)


class Rule(msgspec.Struct, frozen=True):
    """``metric op threshold`` held for ``hold_s`` opens ``code``; see :func:`parse_rules`.

    ``clear_threshold`` adds hysteresis: the condition clears only once ``metric op
    clear_threshold`` is false too (``cell_temp_max_c >= 60`` with ``clear_threshold = 55`` opens
    at 60 and clears below 55).
    """

    code: str
    metric: str
    op: Op
    threshold: float
    severity: Severity
    hold_s: float = 0.0
    clear_threshold: float | None = None


class Notification(msgspec.Struct, frozen=True, gc=False):
    """One notification record; encodes to JSON as is (``msgspec.json.encode``)."""

    schema: str
    device_id: str
    code: str
    severity: Severity
    state: State
    values: dict[str, MetricValue]
    ts: str | None  # device time of the reading that triggered it
    detected_at: str  # gateway wall time
    raw_id: str
    suppressed: bool = False


def _number(entry: dict[str, Any], index: int, key: str) -> float:
    value = entry[key]
    # bool is an int to Python, but `threshold = true` in TOML is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"rules[{index}].{key}: a finite number, not {value!r}")
    return float(value)


def _text(entry: dict[str, Any], index: int, key: str, choices: tuple[str, ...] = ()) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value or (choices and value not in choices):
        wanted = f"one of {', '.join(choices)}" if choices else "a non-empty string"
        raise ValueError(f"rules[{index}].{key}: {wanted}, not {value!r}")
    return value


def parse_rules(table: list[dict[str, Any]]) -> list[Rule]:
    """Validate the TOML ``[[rules]]`` list; a ``ValueError`` names the entry index and key."""
    rules: list[Rule] = []
    codes: set[str] = set()
    for index, entry in enumerate(table):
        if not isinstance(entry, dict):
            raise ValueError(f"rules[{index}]: a table, not {entry!r}")
        unknown = sorted(entry.keys() - _RULE_KEYS)
        if unknown:
            raise ValueError(f"rules[{index}].{unknown[0]}: unknown key")
        for key in ("code", "metric", "op", "threshold", "severity"):
            if key not in entry:
                raise ValueError(f"rules[{index}].{key}: missing")
        code = _text(entry, index, "code")
        if code in codes:
            # Open/clear state is kept per device and code: two rules on one code would fight.
            raise ValueError(f"rules[{index}].code: {code!r} is used by an earlier rule")
        codes.add(code)
        op = _text(entry, index, "op", tuple(OPS))
        threshold = _number(entry, index, "threshold")
        hold_s = _number(entry, index, "hold_s") if "hold_s" in entry else 0.0
        if hold_s < 0:
            raise ValueError(f"rules[{index}].hold_s: must be >= 0, not {hold_s!r}")
        clear: float | None = None
        if "clear_threshold" in entry:
            clear = _number(entry, index, "clear_threshold")
            # Hysteresis must widen the open band, else a value could be open and cleared at once.
            where = f"rules[{index}].clear_threshold"
            if op in ("==", "!="):
                raise ValueError(f"{where}: not allowed with {op}")
            if op[0] == ">" and clear > threshold:
                raise ValueError(f"{where}: {op} needs clear_threshold <= threshold")
            if op[0] == "<" and clear < threshold:
                raise ValueError(f"{where}: {op} needs clear_threshold >= threshold")
        rules.append(
            Rule(
                code=code,
                metric=_text(entry, index, "metric"),
                op=op,  # type: ignore[arg-type]  # checked against OPS above
                threshold=threshold,
                severity=_text(entry, index, "severity", SEVERITIES),  # type: ignore[arg-type]
                hold_s=hold_s,
                clear_threshold=clear,
            )
        )
    return rules


class _RuleState:
    """Where one rule stands for one device; ``pending_since``/``last_sent_at`` are ``now`` s."""

    __slots__ = ("is_open", "last_sent_at", "pending_since")

    def __init__(self) -> None:
        self.pending_since: float | None = None
        self.is_open = False
        self.last_sent_at = 0.0


class _CompiledRule:
    __slots__ = ("clear_at", "code", "compare", "hold_s", "index", "severity", "threshold")

    def __init__(self, index: int, rule: Rule) -> None:
        self.index = index
        self.code = rule.code
        self.severity = rule.severity
        self.hold_s = rule.hold_s
        self.compare: Callable[[float, float], bool] = OPS[rule.op]
        self.threshold = rule.threshold
        self.clear_at = rule.threshold if rule.clear_threshold is None else rule.clear_threshold


def _alarm_severity(alarm: Alarm) -> Severity:
    # Codecs emit ``unknown-N`` for severities their spec does not name: treat them as warnings.
    severity = alarm.severity
    return severity if severity in _RANK else "warning"  # type: ignore[return-value]


class NotificationEngine:
    """Turns readings into :class:`Notification` records; see the module docstring.

    State is bounded: at most ``max_devices`` devices are tracked, least recently seen evicted
    first. An evicted device forgets its open conditions, so one still true re-opens on its next
    reading (a second ``open`` with no ``clear`` between) and one that ended meanwhile never gets
    its ``clear``. Size ``max_devices`` above the fleet to avoid this.

    Reminders and hold times advance only when a reading carrying the rule's metric arrives: the
    engine has no timer, and a reading without the metric leaves the state unchanged.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        reminder_s: float | None,
        rate_per_s: float,
        burst: int,
        max_devices: int = 100_000,
        alarm_min_severity: Severity = "warning",
    ) -> None:
        if reminder_s is not None and not reminder_s > 0:
            raise ValueError(f"reminder_s: > 0 or None, not {reminder_s!r}")
        if not rate_per_s >= 0:
            raise ValueError(f"rate_per_s: >= 0, not {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst: >= 1, not {burst!r}")
        if max_devices < 1:
            raise ValueError(f"max_devices: >= 1, not {max_devices!r}")
        if alarm_min_severity not in _RANK:
            raise ValueError(f"alarm_min_severity: one of {SEVERITIES}, not {alarm_min_severity!r}")
        self.rules = tuple(rules)
        self._reminder_s = reminder_s
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._max_devices = max_devices
        self._alarm_min_rank = _RANK[alarm_min_severity]
        by_metric: dict[str, list[_CompiledRule]] = {}
        for index, rule in enumerate(self.rules):
            by_metric.setdefault(rule.metric, []).append(_CompiledRule(index, rule))
        # Precomputed for the fast path: a reading sharing no key with these costs one set test.
        self._watched = tuple((metric, tuple(rs)) for metric, rs in by_metric.items())
        self._watched_keys = frozenset(by_metric)
        self._devices: OrderedDict[str, list[_RuleState]] = OrderedDict()
        self._tokens = float(burst)
        self._refilled_at: float | None = None
        self.suppressed = 0
        """Notifications marked ``suppressed`` by the rate limit since start."""

    @property
    def tracked_devices(self) -> int:
        """Devices with rule state held now (at most ``max_devices``)."""
        return len(self._devices)

    def evaluate(
        self,
        device_id: str,
        raw_id: str,
        readings: Sequence[Reading],
        now: float,
        now_wall_ms: int,
    ) -> list[Notification]:
        """The notifications owed for one device's readings, in reading order.

        ``now`` is the caller's monotonic clock in seconds (hold, reminder, rate limit);
        ``now_wall_ms`` the Unix wall time in ms, stamped as ``detected_at``.
        """
        out: list[Notification] = []
        watched = self._watched
        watched_keys = self._watched_keys
        states: list[_RuleState] | None = None
        for reading in readings:
            if reading.alarms:
                self._alarms(out, device_id, raw_id, reading, now, now_wall_ms)
            metrics = reading.metrics
            if watched_keys.isdisjoint(metrics):  # the fast path: nothing any rule watches
                continue
            for metric, compiled in watched:
                value = metrics.get(metric)
                # Only numbers (and bools) compare; a NaN is no evidence either way.
                if not isinstance(value, (int, float)) or math.isnan(value):
                    continue
                if states is None:
                    states = self._states(device_id)
                for c in compiled:
                    state = states[c.index]
                    # The common case, idle and still false, stays inline.
                    if (
                        not state.is_open
                        and state.pending_since is None
                        and not c.compare(value, c.threshold)
                    ):
                        continue
                    emit = self._step(c, state, value, now)
                    if emit is not None:
                        out.append(
                            self._notify(
                                device_id,
                                c.code,
                                c.severity,
                                emit,
                                {metric: value},
                                reading.ts_ms,
                                now,
                                now_wall_ms,
                                raw_id,
                            )
                        )
        return out

    def _step(self, c: _CompiledRule, state: _RuleState, value: float, now: float) -> State | None:
        if state.is_open:
            if not c.compare(value, c.clear_at):
                state.is_open = False
                state.pending_since = None
                return "clear"
            reminder_s = self._reminder_s
            if reminder_s is not None and now - state.last_sent_at >= reminder_s:
                state.last_sent_at = now
                return "reminder"
            return None
        if not c.compare(value, c.threshold):
            state.pending_since = None
            return None
        if state.pending_since is None:
            state.pending_since = now
        if now - state.pending_since >= c.hold_s:
            state.is_open = True
            state.last_sent_at = now
            return "open"
        return None

    def _states(self, device_id: str) -> list[_RuleState]:
        devices = self._devices
        states = devices.get(device_id)
        if states is None:
            states = [_RuleState() for _ in self.rules]
            devices[device_id] = states
            if len(devices) > self._max_devices:
                devices.popitem(last=False)
        else:
            devices.move_to_end(device_id)
        return states

    def _alarms(
        self,
        out: list[Notification],
        device_id: str,
        raw_id: str,
        reading: Reading,
        now: float,
        now_wall_ms: int,
    ) -> None:
        for alarm in reading.alarms:
            severity = _alarm_severity(alarm)
            if _RANK[severity] < self._alarm_min_rank:
                continue
            values: dict[str, MetricValue] = {"value": alarm.value, "subsystem": alarm.subsystem}
            out.append(
                self._notify(
                    device_id,
                    alarm.code,
                    severity,
                    "open",
                    values,
                    reading.ts_ms,
                    now,
                    now_wall_ms,
                    raw_id,
                )
            )

    def _notify(
        self,
        device_id: str,
        code: str,
        severity: Severity,
        state: State,
        values: dict[str, MetricValue],
        ts_ms: int | None,
        now: float,
        now_wall_ms: int,
        raw_id: str,
    ) -> Notification:
        suppressed = not self._take_token(now)
        if suppressed:
            self.suppressed += 1
        return Notification(
            NOTIFICATION_SCHEMA,
            device_id,
            code,
            severity,
            state,
            values,
            None if ts_ms is None else iso_ms(ts_ms),
            iso_ms(now_wall_ms),
            raw_id,
            suppressed,
        )

    def _take_token(self, now: float) -> bool:
        last = self._refilled_at
        if last is not None and now > last:
            self._tokens = min(self._burst, self._tokens + (now - last) * self._rate_per_s)
        if last is None or now > last:
            self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
