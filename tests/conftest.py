"""Checks before the suite runs anything."""

from __future__ import annotations

import pytest

import mypyc_build


def pytest_configure(config: pytest.Config) -> None:
    # Python imports a compiled parser module before its source, so a build older than the
    # sources would test yesterday's code; xdist's workers leave it to the controller.
    if not hasattr(config, "workerinput") and (reason := mypyc_build.stale()) is not None:
        raise pytest.UsageError(reason)
