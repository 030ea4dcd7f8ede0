"""One simulated history shared by the lake's test modules (the physics costs ~0.3 s a
vehicle-day whatever the frame rate); tests copy it before changing anything in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lake.lakes import history


@pytest.fixture(scope="session")
def fleet_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of two EVB1 cars, a frame every 30 s, with faults (so notifications too).
    Read-only: copy it to change it."""
    base = tmp_path_factory.mktemp("fleet-days")
    history(base, devices=2, days=2, frame_s=30.0, faults_per_min=0.02)
    return base
