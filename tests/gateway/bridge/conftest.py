from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.bridge.harness import World
from tests.pki import Pki


@pytest.fixture(scope="session")
def bridge_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("bridge-pki"))


@pytest.fixture
def world(tmp_path: Path, bridge_pki: Pki) -> Iterator[World]:
    """Brokers A (Azure side, mutual TLS) and B (AWS side, password over TLS), started."""
    w = World.create(tmp_path, bridge_pki)
    try:
        w.a.start()
        w.b.start()
        yield w
    finally:
        w.stop()
