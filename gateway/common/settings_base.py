"""The pieces every settings section shares: the frozen section base, ACK policies, errors.

Each package keeps its sections in its own ``settings`` module built on ``Section``;
``gateway.settings`` assembles the one ``Settings`` object.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

# accepted: in memory; journaled: covered by a journal fsync; delivered: every remote target of
# the frame's records confirmed them (journaled, when the records have no remote target).
AckPolicy = Literal["accepted", "journaled", "delivered"]


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one ``field.path: message`` line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# `gateway check-config --skip-files`: collects the certificate and password files a settings file
# names that are missing here, instead of refusing them (an example, or settings written for
# another host). None, the default: a missing file is an error.
MISSING_FILES: ContextVar[list[Path] | None] = ContextVar("missing_files", default=None)


def missing_file_allowed(path: Path) -> bool:
    """Whether the missing file ``path`` is to be listed rather than refused (and list it)."""
    allowed = MISSING_FILES.get()
    if allowed is not None:
        allowed.append(path)
    return allowed is not None


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
