"""Redelivery: a bridge killed with a full window of messages acknowledged only once delivered
gets them again (MQTT 3.1.1 on both sides), and a pipeline message past its deadline is fetched
again."""

from __future__ import annotations

from tests.gateway.bridge.harness import Publisher, Subscriber, World
from tests.gateway.gatewayproc import read_records, wait_for
from tests.parser.streams import evb1_heartbeat

IN_FLIGHT = 8
COUNT = 30


def test_a_killed_bridge_gets_its_unacknowledged_messages_again(world: World) -> None:
    config = world.config(in_flight=IN_FLIGHT, protocol="3.1.1", ack_policy="delivered")
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    try:
        world.b.stop()
        Publisher(world, "src/dev3/t", COUNT, rate=1000.0).join(timeout=30)
        # B is down: the bridge holds one window of taken, journaled, unacknowledged messages.
        assert wait_for(lambda: proc.metric("gateway_bridge_in_flight") == IN_FLIGHT)
        proc.kill()
        world.b.start()
        proc = world.start_bridge(config)
        expected = {f"{i:06d}".encode() for i in range(COUNT)}
        assert wait_for(lambda: {p for _, p, _ in reader.snapshot()} == expected)
        got = reader.snapshot()
        # The window went twice: from the journal and redelivered by A (3.1.1 carries no id,
        # MQTT 5 gives both copies the same one: test_journal.py).
        assert len(got) <= COUNT + IN_FLIGHT
        assert all(props == {} for _, _, props in got)  # 3.1.1: no user properties
        # A sent them again flagged DUP: at least the window the dead bridge had taken.
        assert proc.metric("gateway_bridge_redelivered_total") >= IN_FLIGHT
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_a_pipeline_message_not_written_in_time_is_fetched_again(world: World) -> None:
    # A sink that hangs stands in for records given up on (dead-lettered), which never report
    # back: past redeliver_after_s the bridge reconnects so that A delivers them again.
    stall = world.directory / "stall"
    stall.touch()
    route = (
        '[[bridge.routes]]\nname = "frames"\nsource = "azure"\n'
        'topic = "src/{device_id}/evb1"\ncodec = "evb1"\n'
        f'[sink.local]\nstall_while_exists = "{stall}"\n'
    )
    config = world.config(routes=route, extra="redeliver_after_s = 1.0")
    proc = world.start_bridge(config)
    try:
        world.mosquitto_pub("src/861000000000001/evb1", evb1_heartbeat(1))
        assert wait_for(lambda: proc.metric("gateway_bridge_source_reconnects_total") >= 1)
        lost = proc.events("source connection lost")
        assert "not written within 1 s" in lost[0]["error"]
        assert wait_for(lambda: proc.metric("gateway_bridge_redelivered_total") >= 1)
        stall.unlink()
        assert wait_for(lambda: proc.metric("gateway_bridge_in_flight") == 0)
        raw = read_records(proc.data_dir, "raw")
        assert {r["device_id"] for r in raw} == {"861000000000001"}
        assert len({r["peer"] for r in raw}) == 1  # every copy carries the same message id
        assert proc.stop() == 0
    finally:
        proc.kill()
