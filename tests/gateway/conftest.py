"""Kinesalite for the gateway tests that ship to Kinesis (the sink, the raw-stream consumer, MQTT
dead letters, notifications): one emulator per session, started by the first test that asks for
it; a unique stream per test, a fault proxy per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.gateway.sinks.kinesis.emulator import Kinesalite, missing_tools, unique_stream_name
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy


@pytest.fixture(scope="session")
def kinesalite() -> Iterator[Kinesalite]:
    """The emulator; a missing node or kinesalite fails the tests (CI must run them)."""
    problem = missing_tools()
    if problem:
        pytest.fail(problem, pytrace=False)
    emulator = Kinesalite()
    yield emulator
    emulator.stop()


@pytest.fixture
def make_stream(kinesalite: Kinesalite, request: pytest.FixtureRequest) -> Callable[[int], str]:
    """Creates an ACTIVE stream named after the test (plus a random suffix) and returns its name."""

    def make(shards: int) -> str:
        name = unique_stream_name(request.node.name)
        kinesalite.create_stream(name, shards)
        return name

    return make


@pytest.fixture
def stream(make_stream: Callable[[int], str]) -> str:
    """A fresh ACTIVE 4-shard stream."""
    return make_stream(4)


@pytest.fixture
def fault_proxy(kinesalite: Kinesalite) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the session's kinesalite, with a clean policy and counters."""
    with FaultProxy(kinesalite.endpoint) as proxy:
        yield proxy
