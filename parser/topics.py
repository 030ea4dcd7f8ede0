"""MQTT topic templates and filters, shared by the MQTT listener and the bridge.

A template names whole topic levels in braces: ``ev/{device_id}/telemetry``. It matches a topic
(returning the named levels), turns into the subscription filter that covers it
(``ev/+/telemetry``) and formats a topic from values, so a bridge route can map
``src/{device_id}/t`` to ``ev/{device_id}/telemetry``. A trailing ``{name...}`` level takes the
rest of the topic (one or more levels), like a filter's ``#``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VARIABLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}$")


class TopicError(ValueError):
    """A template or filter that breaks the MQTT topic rules (MQTT 3.1.1 §4.7, 5.0 §4.7)."""


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A topic with named levels; build with ``TopicTemplate.parse``."""

    text: str
    # Per level: a literal, or the name of the variable the level binds.
    levels: tuple[tuple[str, bool], ...]  # (literal or name, is_variable)
    rest: str | None  # name bound to the remaining levels, if the template ends in {name...}

    @classmethod
    def parse(cls, text: str) -> TopicTemplate:
        if not text:
            raise TopicError("empty topic template")
        if "+" in text or "#" in text or "\0" in text:
            raise TopicError(f"{text!r}: use {{name}} levels, not MQTT wildcards")
        parts = text.split("/")
        levels: list[tuple[str, bool]] = []
        names: set[str] = set()
        rest = None
        for index, part in enumerate(parts):
            found = _VARIABLE.match(part)
            if found is None:
                if "{" in part or "}" in part:
                    raise TopicError(f"{text!r}: a variable must be a whole level, like {{name}}")
                levels.append((part, False))
                continue
            name = found.group(1)
            if name in names:
                raise TopicError(f"{text!r}: variable {name!r} appears twice")
            names.add(name)
            if found.group(2):
                if index != len(parts) - 1:
                    raise TopicError(f"{text!r}: {{{name}...}} must be the last level")
                rest = name
            else:
                levels.append((name, True))
        return cls(text, tuple(levels), rest)

    @property
    def names(self) -> frozenset[str]:
        found = {name for name, variable in self.levels if variable}
        if self.rest is not None:
            found.add(self.rest)
        return frozenset(found)

    @property
    def filter(self) -> str:
        """The MQTT subscription filter covering every topic this template matches."""
        parts = ["+" if variable else value for value, variable in self.levels]
        if self.rest is not None:
            parts.append("#")
        return "/".join(parts)

    def match(self, topic: str) -> dict[str, str] | None:
        """The variables of ``topic``, or None when it does not fit. Variables are never empty."""
        parts = topic.split("/")
        count = len(self.levels)
        if len(parts) < count or (self.rest is None and len(parts) != count):
            return None
        if self.rest is not None and len(parts) == count:
            return None
        values: dict[str, str] = {}
        for (value, variable), part in zip(self.levels, parts, strict=False):
            if variable:
                if not part:
                    return None
                values[value] = part
            elif part != value:
                return None
        if self.rest is not None:
            values[self.rest] = "/".join(parts[count:])
        return values

    def format(self, values: dict[str, str]) -> str:
        """The topic with ``values`` filled in; KeyError names a missing variable."""
        parts = [values[value] if variable else value for value, variable in self.levels]
        if self.rest is not None:
            parts.append(values[self.rest])
        return "/".join(parts)


def validate_filter(text: str) -> str:
    """``text`` if it is a valid subscription filter (§4.7.1), else TopicError."""
    if not text or "\0" in text:
        raise TopicError("empty topic filter")
    parts = text.split("/")
    for index, part in enumerate(parts):
        if "#" in part and (part != "#" or index != len(parts) - 1):
            raise TopicError(f"{text!r}: '#' must be a whole level and the last one")
        if "+" in part and part != "+":
            raise TopicError(f"{text!r}: '+' must be a whole level")
    return text


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (§4.7); ``$`` topics need a literal
    first level (§4.7.2), so ``#`` never matches ``$SYS/...``."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted = topic_filter.split("/")
    parts = topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(parts):
            return False
        if level != "+" and level != parts[index]:
            return False
    return len(parts) == len(wanted)
