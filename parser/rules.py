"""Fault notifications from parsed readings: protocol alarms and threshold rules, storm-controlled.

Pure code: the caller passes its monotonic clock (``now``, seconds) for hold times, reminders and
the rate limit, and its wall clock (``now_wall_ms``) for ``detected_at``. Nothing here reads a
clock or does I/O, so the engine runs inline on every record and tests drive it with a fake clock.

Per device and rule the engine keeps a tiny state machine::

    idle --condition true--> pending --held hold_s--> open --condition false--> idle (clear)
                                                      open --reminder_s elapsed--> open (reminder)

Protocol alarms (EVB1 FAULT, GT06 alarm packets, Teltonika panic records) and Teltonika records
whose event IO id is configured are events, not conditions: each one at or above
``alarm_min_severity`` gives one ``open`` and never a ``clear``.

:func:`evaluate_frame` is the one step live ingest and replay share: a frame's readings in, its
parsed records (rule and event notifications added to their ``alarms``) and notifications out.

Storm control is one global token bucket over all notifications. A notification that finds the
bucket empty is still returned, marked ``suppressed=True`` and counted in
:attr:`NotificationEngine.suppressed`: the runtime records it but does not deliver it, so nothing
is silently dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec

from parser.notification import (
    NOTIFICATION_SCHEMA,
    OPS,
    SEVERITIES,
    Notification,
    Rule,
    Severity,
    State,
    notification_id,
    parse_rules,
)
from parser.records import (
    Alarm,
    MetricValue,
    ParsedRecord,
    RawRecord,
    Reading,
    iso_ms,
    parsed_records,
)

__all__ = [
    "NOTIFICATION_SCHEMA",
    "Notification",
    "NotificationEngine",
    "Rule",
    "Severity",
    "evaluate_frame",
    "notification_id",
    "parse_rules",
]

_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES)}
# The severity a rule's ``clear`` carries into the parsed record's alarms: ITU-T X.733's
# "cleared" perceived severity, so analytics sees when a condition ended.
CLEARED: Final = "cleared"
RULE_SUBSYSTEM: Final = "rule"


class _RuleState:
    """Where one rule stands for one device; ``pending_since``/``last_sent_at`` are ``now`` s."""

    __slots__ = ("is_open", "last_sent_at", "pending_since")

    def __init__(self) -> None:
        self.pending_since: float | None = None
        self.is_open = False
        self.last_sent_at = 0.0


def _all_idle(states: list[_RuleState]) -> bool:
    return all(s.pending_since is None and not s.is_open for s in states)


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


# Shared by the notifications of one ``evaluate`` call: device, raw id, now, wall ms, replayed.
_Context = tuple[str, str, float, int, bool]


def _alarm_severity(alarm: Alarm) -> Severity:
    # Codecs emit ``unknown-N`` for severities their spec does not name: treat them as warnings.
    severity = alarm.severity
    return severity if severity in _RANK else "warning"  # type: ignore[return-value]


class NotificationEngine:
    """Turns readings into :class:`Notification` records; see the module docstring.

    State is bounded and kept only for devices with a condition open or pending (a healthy
    device costs nothing): at most ``max_devices`` of them, least recently seen evicted first.
    An evicted device forgets its open conditions, so one still true re-opens on its next
    reading (a second ``open`` with no ``clear`` between) and one that ended meanwhile never gets
    its ``clear``. Size ``max_devices`` above the devices ever in trouble at once.

    Reminders and hold times advance only when a reading carrying the rule's metric arrives: the
    engine has no timer, and a reading without the metric leaves the state unchanged.

    ``alarm_codes`` renames protocol alarm codes in notifications (``EVB1-0x0102`` →
    ``isolation_fault``; the parsed record keeps the device's code). A protocol alarm whose
    (renamed) code a rule also raises opens that rule's condition instead of being an event of
    its own: the device's fault report and the gateway's threshold are one condition, with one
    ``open``, and the rule's metric clears it. While it is open, more alarms of that code add
    nothing. (So map an alarm to a rule code only for devices that report the rule's metric.)

    ``event_codes`` maps a reading's ``attrs.event_io_id`` (Teltonika's event IO id) to the code
    and severity of the notification it raises; configured explicitly, it ignores
    ``alarm_min_severity``.
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
        alarm_codes: Mapping[str, str] | None = None,
        event_codes: Mapping[int, tuple[str, Severity]] | None = None,
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
        for io_id, (code, severity) in (event_codes or {}).items():
            if not code or severity not in _RANK:
                raise ValueError(f"event_codes[{io_id}]: a code and one of {SEVERITIES}")
        self.rules = tuple(rules)
        self._reminder_s = reminder_s
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._max_devices = max_devices
        self._alarm_min_rank = _RANK[alarm_min_severity]
        self._alarm_codes = dict(alarm_codes or {})
        self._event_codes = dict(event_codes or {})
        by_metric: dict[str, list[_CompiledRule]] = {}
        for index, rule in enumerate(self.rules):
            by_metric.setdefault(rule.metric, []).append(_CompiledRule(index, rule))
        self._watched = tuple((metric, tuple(rs)) for metric, rs in by_metric.items())
        self._by_code: dict[str, list[_CompiledRule]] = {}
        for compiled in by_metric.values():
            for c in compiled:
                self._by_code.setdefault(c.code, []).append(c)
        self._devices: OrderedDict[str, list[_RuleState]] = OrderedDict()
        self._tokens = float(burst)
        self._refilled_at: float | None = None
        self.suppressed = 0
        """Notifications marked ``suppressed`` by the rate limit since start."""

    @property
    def tracked_devices(self) -> int:
        """Devices with a condition open or pending now (at most ``max_devices``)."""
        return len(self._devices)

    def adopt(self, old: NotificationEngine) -> None:
        """Carry ``old``'s state over (a SIGHUP reload): per device, the state of every rule
        both engines have unchanged, and the rate limit's tokens. A changed or new rule starts
        idle everywhere, so a condition true under it opens again on its next reading."""
        old_index = {rule: index for index, rule in enumerate(old.rules)}
        pairs = [(old_index[rule], new) for new, rule in enumerate(self.rules) if rule in old_index]
        if pairs:
            for device, states in old._devices.items():  # least recently seen first
                mine = [_RuleState() for _ in self.rules]
                for before, after in pairs:
                    mine[after] = states[before]
                if _all_idle(mine):
                    continue  # only changed rules had a condition going: nothing to keep
                self._devices[device] = mine
                if len(self._devices) > self._max_devices:
                    self._devices.popitem(last=False)
        self._tokens = min(float(self._burst), old._tokens)
        self._refilled_at = old._refilled_at
        self.suppressed = old.suppressed

    def snapshot(self) -> dict[str, Any]:
        """The per-device rule state as JSON-able data, for a consumer's checkpoint (only
        meaningful when ``now`` is a persistent clock, as replay's received-at time is)."""
        return {
            "rules": self._rules_data(),
            "devices": {
                device: [[s.is_open, s.pending_since, s.last_sent_at] for s in states]
                for device, states in self._devices.items()
            },
        }

    def _rules_data(self) -> list[Any]:
        return [msgspec.to_builtins(rule) for rule in self.rules]  # a list, as JSON gives back

    def restore(self, snapshot: dict[str, Any]) -> bool:
        """Take the state of :meth:`snapshot` back; False (and nothing taken) when it was made
        under other rules or is not a snapshot: those start idle, as after a reload."""
        try:
            if snapshot["rules"] != self._rules_data():
                return False
            devices: OrderedDict[str, list[_RuleState]] = OrderedDict()
            for device, rows in snapshot["devices"].items():
                states = [_RuleState() for _ in self.rules]
                for state, (is_open, pending_since, last_sent_at) in zip(states, rows, strict=True):
                    state.is_open, state.pending_since = bool(is_open), pending_since
                    state.last_sent_at = float(last_sent_at)
                devices[str(device)] = states
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        self._devices = devices
        return True

    def evaluate(
        self,
        device_id: str,
        raw_id: str,
        readings: Sequence[Reading],
        now: float,
        now_wall_ms: int,
        *,
        alarms: dict[int, list[Alarm]] | None = None,
        replayed: bool = False,
    ) -> list[Notification]:
        """The notifications owed for one device's readings, in reading order.

        ``now`` is the caller's monotonic clock in seconds (hold, reminder, rate limit);
        ``now_wall_ms`` the Unix wall time in ms, stamped as ``detected_at``. ``alarms``, if
        given, receives by reading index the alarms that rule and event notifications add to
        that reading's parsed record (protocol alarms are in it already).
        """
        out: list[Notification] = []
        watched = self._watched
        devices = self._devices
        event_codes = self._event_codes
        states: list[_RuleState] | None = None  # None: every rule idle for this device
        looked_up = False
        ctx: _Context | None = None  # built on the first notification: most calls have none
        index = -1  # counted by hand: enumerate's tuples cost more than the whole fast path
        for reading in readings:
            index += 1
            if reading.alarms:
                ctx = ctx or (device_id, raw_id, now, now_wall_ms, replayed)
                if self._alarms(out, ctx, index, reading):
                    looked_up = False  # an alarm opened a rule's condition: states changed
            if event_codes:
                event_id = reading.attrs.get("event_io_id")
                if isinstance(event_id, int) and event_id in event_codes:
                    ctx = ctx or (device_id, raw_id, now, now_wall_ms, replayed)
                    self._event(out, alarms, ctx, index, reading, event_id)
            metrics = reading.metrics
            # A few watched metrics against many in a reading: a lookup each is the fast path
            # (a set test over the reading's keys costs one probe per key).
            for metric, compiled in watched:
                value = metrics.get(metric)
                # Only numbers (and bools) compare; a NaN (!= itself) is no evidence either way.
                if value is None or not isinstance(value, (int, float)) or value != value:  # noqa: PLR0124
                    continue
                if not looked_up:
                    states = devices.get(device_id)
                    if states is not None:
                        devices.move_to_end(device_id)
                    looked_up = True
                for c in compiled:
                    if states is None:
                        if not c.compare(value, c.threshold):
                            continue  # the common case: a healthy device holds no state at all
                        states = self._track(device_id)
                    state = states[c.index]
                    # Idle and still false stays inline too.
                    if (
                        not state.is_open
                        and state.pending_since is None
                        and not c.compare(value, c.threshold)
                    ):
                        continue
                    emit = self._step(c, state, value, now)
                    if (
                        state.pending_since is None
                        and not state.is_open
                        and self._forget(device_id)
                    ):
                        states = None
                    if emit is None:
                        continue
                    values: dict[str, MetricValue] = {metric: value}
                    ctx = ctx or (device_id, raw_id, now, now_wall_ms, replayed)
                    out.append(self._notify(ctx, index, c.code, c.severity, emit, values, reading))
                    if alarms is not None:
                        severity = CLEARED if emit == "clear" else c.severity
                        number = int(value) if isinstance(value, bool) else value
                        alarm = Alarm(c.code, severity, RULE_SUBSYSTEM, number)
                        alarms.setdefault(index, []).append(alarm)
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

    def _lookup(self, device_id: str) -> list[_RuleState] | None:
        states = self._devices.get(device_id)
        if states is not None:
            self._devices.move_to_end(device_id)
        return states

    def _track(self, device_id: str) -> list[_RuleState]:
        devices = self._devices
        states = devices[device_id] = [_RuleState() for _ in self.rules]
        if len(devices) > self._max_devices:
            devices.popitem(last=False)
        return states

    def _forget(self, device_id: str) -> bool:
        """Drop a device whose every rule is idle again (True if dropped)."""
        if not _all_idle(self._devices[device_id]):
            return False
        del self._devices[device_id]
        return True

    def _alarms(self, out: list[Notification], ctx: _Context, index: int, reading: Reading) -> bool:
        """Notify the reading's protocol alarms; True if one opened a rule's condition."""
        opened = False
        for alarm in reading.alarms:
            severity = _alarm_severity(alarm)
            if _RANK[severity] < self._alarm_min_rank:
                continue
            code = self._alarm_codes.get(alarm.code, alarm.code)
            rules = self._by_code.get(code)
            if rules is not None:
                device_id, now = ctx[0], ctx[2]
                states = self._lookup(device_id) or self._track(device_id)
                if any(states[c.index].is_open for c in rules):
                    continue  # the condition is open already: one condition, one open
                for c in rules:
                    state = states[c.index]
                    state.is_open, state.pending_since, state.last_sent_at = True, None, now
                opened = True
            values: dict[str, MetricValue] = {"value": alarm.value, "subsystem": alarm.subsystem}
            out.append(self._notify(ctx, index, code, severity, "open", values, reading))
        return opened

    def _event(
        self,
        out: list[Notification],
        alarms: dict[int, list[Alarm]] | None,
        ctx: _Context,
        index: int,
        reading: Reading,
        event_id: int,
    ) -> None:
        code, severity = self._event_codes[event_id]
        values: dict[str, MetricValue] = {
            "event_io_id": event_id,
            "value": reading.io.get(str(event_id)),
        }
        out.append(self._notify(ctx, index, code, severity, "open", values, reading))
        if alarms is not None:
            # "tcu", as the codec's own panic alarm: the unit's IO raised it.
            alarms.setdefault(index, []).append(Alarm(code, severity, "tcu", event_id))

    def _notify(
        self,
        ctx: _Context,
        index: int,
        code: str,
        severity: Severity,
        state: State,
        values: dict[str, MetricValue],
        reading: Reading,
    ) -> Notification:
        device_id, raw_id, now, now_wall_ms, replayed = ctx
        suppressed = not self._take_token(now)
        if suppressed:
            self.suppressed += 1
        ts_ms = reading.ts_ms
        return Notification(
            NOTIFICATION_SCHEMA,
            notification_id(raw_id, index, code, state),
            device_id,
            code,
            severity,
            state,
            values,
            None if ts_ms is None else iso_ms(ts_ms),
            iso_ms(now_wall_ms),
            raw_id,
            suppressed,
            replayed,
        )

    def _take_token(self, now: float) -> bool:
        # Not gateway.common.token_bucket: parser/ is pure and imports nothing from gateway/,
        # and storm control only needs take-or-refuse (no waiting, no debt) with tokens that
        # carry over a rules reload; six lines do not earn a shared module below both.
        last = self._refilled_at
        if last is not None and now > last:
            self._tokens = min(self._burst, self._tokens + (now - last) * self._rate_per_s)
        if last is None or now > last:
            self._refilled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def evaluate_frame(
    engine: NotificationEngine | None,
    raw: RawRecord,
    readings: tuple[Reading, ...],
    now: float,
    now_wall_ms: int,
    *,
    replayed: bool = False,
) -> tuple[list[ParsedRecord], list[Notification]]:
    """One frame's parsed records and notifications: the step live ingest and replay share.

    Rule and event notifications appear in the ``alarms`` of the parsed record of the reading
    that raised them (a rule's ``clear`` with severity ``cleared``). Without an engine, or for
    a frame of no known device (no login), there are no notifications.
    """
    if engine is None or raw.device_id is None or not readings:
        return parsed_records(raw, readings), []
    added: dict[int, list[Alarm]] = {}
    notes = engine.evaluate(
        raw.device_id, raw.id, readings, now, now_wall_ms, alarms=added, replayed=replayed
    )
    if added:
        readings = tuple(
            msgspec.structs.replace(r, alarms=(*r.alarms, *added[i])) if i in added else r
            for i, r in enumerate(readings)
        )
    return parsed_records(raw, readings), notes
