"""MQTT 3.1.1 on both sides: a bridge killed with a full window gets exactly that window again."""

from __future__ import annotations

from tests.bridge.harness import Publisher, Subscriber, World
from tests.gateway.gatewayproc import wait_for

IN_FLIGHT = 8
COUNT = 30


def test_a_killed_bridge_gets_its_unacknowledged_messages_again(world: World) -> None:
    config = world.config(in_flight=IN_FLIGHT, protocol="3.1.1")
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    try:
        world.b.stop()
        Publisher(world, "src/dev3/t", COUNT, rate=1000.0).join(timeout=30)
        # B is down: the bridge holds one window of taken, unacknowledged messages.
        assert wait_for(lambda: proc.metric("gateway_bridge_in_flight") == IN_FLIGHT)
        proc.kill()
        world.b.start()
        proc = world.start_bridge(config)
        assert wait_for(lambda: len(reader.snapshot()) >= COUNT)
        got = reader.snapshot()
        assert sorted(p for _, p, _ in got) == [f"{i:06d}".encode() for i in range(COUNT)]
        assert all(props == {} for _, _, props in got)  # 3.1.1: no user properties
        # A sent them again flagged DUP: at least the window the dead bridge had taken.
        assert proc.metric("gateway_bridge_redelivered_total") >= IN_FLIGHT
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()
