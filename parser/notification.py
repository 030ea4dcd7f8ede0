"""What the notification engine (:mod:`parser.rules`) reads and writes: a :class:`Rule`, from
TOML's ``[[notifications.rules]]`` tables through :func:`parse_rules` (errors name the entry and
key), and the :class:`Notification` record with its stable id. Pure code.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable
from typing import Any, Final, Literal, get_args

import msgspec

from parser.records import MetricValue

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


class Notification(msgspec.Struct, frozen=True, gc=False):
    """One notification record; encodes to JSON as is (``msgspec.json.encode``).

    ``id`` is stable for a frame, reading, code and state (:func:`notification_id`): a replay
    and a redelivery carry the same id, so receivers and SNS FIFO deduplicate on it.
    """

    schema: str
    id: str
    device_id: str
    code: str
    severity: Severity
    state: State
    values: dict[str, MetricValue]
    ts: str | None  # device time of the reading that triggered it
    detected_at: str  # gateway wall time
    raw_id: str
    suppressed: bool = False
    replayed: bool = False  # made by `gateway replay` from archived raw records, not live


def notification_id(raw_id: str, index: int, code: str, state: str) -> str:
    """128 bits of hex from the raw record id, reading index, code and state (within SNS's
    128-character, punctuation-only deduplication id whatever characters ``code`` holds)."""
    key = f"{raw_id}/{index}/{code}/{state}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()
