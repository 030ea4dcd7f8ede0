"""The bridge's journal between real brokers: a destination outage outlasts a bridge restart
(SIGTERM) and a crash (SIGKILL) after A was acknowledged; every message still reaches B, and a
message that arrives twice carries one id."""

from __future__ import annotations

from tests.gateway.bridge.harness import Publisher, Subscriber, World
from tests.gateway.gatewayproc import wait_for

IN_FLIGHT = 8
COUNT = 200
RATE = 50.0


def payloads(count: int) -> set[bytes]:
    return {f"{seq:06d}".encode() for seq in range(count)}


def one_id_per_message(got: list[tuple[str, bytes, dict[str, str]]]) -> bool:
    ids: dict[bytes, set[str]] = {}
    for _, payload, props in got:
        ids.setdefault(payload, set()).add(props["bridge-msg-id"])
    return all(len(v) == 1 for v in ids.values()) and len(set().union(*ids.values())) == len(ids)


def test_a_destination_outage_across_a_bridge_restart_loses_nothing(world: World) -> None:
    config = world.config(in_flight=IN_FLIGHT)
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    world.b.stop()
    publisher = Publisher(world, "src/dev4/t", COUNT, RATE)
    try:
        assert wait_for(lambda: publisher.sent >= COUNT // 3, timeout=30)
        assert proc.stop() == 0  # SIGTERM with B down: the backlog stays in the journal
        proc = world.start_bridge(config)
        # The new process starts from the cursor with the backlog still unshipped.
        assert proc.metric("gateway_bridge_journal_unshipped_bytes") > 0
        publisher.join(timeout=60)
        assert wait_for(
            lambda: (
                proc.metric("gateway_bridge_acknowledged_total")
                == proc.metric("gateway_bridge_received_total")
            )
        )
        world.b.start()
        assert wait_for(lambda: {p for _, p, _ in reader.snapshot()} == payloads(COUNT), 60)
        got = reader.snapshot()
        assert {t for t, _, _ in got} == {"aws/in/dev4/t"}
        assert one_id_per_message(got)
        assert wait_for(lambda: proc.metric("gateway_bridge_journal_unshipped_bytes") == 0)
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_messages_acknowledged_to_the_source_arrive_after_a_crash(world: World) -> None:
    count = 50
    config = world.config(in_flight=IN_FLIGHT)
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    try:
        world.b.stop()
        Publisher(world, "src/dev6/t", count, rate=1000.0).join(timeout=30)
        # Journaled, so A was acknowledged for every one of them while B is down.
        assert wait_for(lambda: proc.metric("gateway_bridge_acknowledged_total") == count)
        proc.kill()
        world.b.start()
        proc = world.start_bridge(config)
        assert wait_for(lambda: {p for _, p, _ in reader.snapshot()} == payloads(count))
        assert one_id_per_message(reader.snapshot())
        # They came from the journal: A had nothing left to deliver again but the few
        # acknowledgements the kill may have caught on their way out.
        assert proc.metric("gateway_bridge_received_total") <= IN_FLIGHT
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_a_series_left_by_a_destination_no_longer_configured_is_reported(world: World) -> None:
    stranded = world.directory / "data" / "bridge"
    stranded.mkdir(parents=True)
    (stranded / "aws-old-00000000000000000000.jsonl").write_bytes(b"{}\n")
    proc = world.start_bridge(world.config())
    try:
        [warning] = proc.events(
            "bridge journal series of no configured destination: its messages are not shipped "
            "(a destination renamed or removed?)"
        )
        assert (warning["series"], warning["bytes"]) == ("aws-old", 3)
        assert proc.stop() == 0
    finally:
        proc.kill()
