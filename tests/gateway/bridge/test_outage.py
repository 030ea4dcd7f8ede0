"""A 30 s outage of the destination under a steady source: the bridge journals the backlog and
acknowledges A as it goes (A's session holds nothing), then drains the journal through its token
buckets."""

from __future__ import annotations

import time
from collections import Counter

from tests.gateway.bridge.harness import Publisher, Subscriber, World
from tests.gateway.gatewayproc import wait_for

OUTAGE_S = 30.0
RATE = 5.0  # published per second, all along
COUNT = 200
IN_FLIGHT = 10
CONNECTIONS, PER_CONNECTION, BURST = 2, 10.0, 2
PUBLISHING = 20  # the destinations' default in_flight_per_connection


def test_backlog_is_held_then_drained_at_the_configured_rate(world: World) -> None:
    config = world.config(
        in_flight=IN_FLIGHT, connections=CONNECTIONS, rate=PER_CONNECTION, burst=BURST
    )
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    publisher = Publisher(world, "src/dev7/t", COUNT, RATE)
    try:

        def arrived() -> set[bytes]:
            return {p for _, p, _ in reader.snapshot()}

        assert wait_for(lambda: len(arrived()) >= 5)
        world.b.stop()
        before = len(arrived())
        time.sleep(OUTAGE_S)
        # Held in the journal: everything A sent was taken and acknowledged (journaled).
        assert proc.metric("gateway_bridge_destination_connected") == 0
        assert wait_for(lambda: proc.metric("gateway_bridge_received_total") >= publisher.sent)
        assert wait_for(
            lambda: (
                proc.metric("gateway_bridge_acknowledged_total")
                == proc.metric("gateway_bridge_received_total")
            )
        )
        backlog = publisher.sent - before
        assert backlog > 4 * IN_FLIGHT, backlog
        unshipped = proc.metric("gateway_bridge_journal_messages_total") - proc.metric(
            "gateway_bridge_journal_shipped_total"
        )
        assert unshipped >= backlog - CONNECTIONS * PUBLISHING, (unshipped, backlog)
        assert proc.metric("gateway_bridge_journal_unshipped_bytes") > 0
        world.b.start()

        publisher.join(timeout=60)
        assert wait_for(lambda: len(arrived()) == COUNT, timeout=60)
        got = reader.snapshot()
        assert set(Counter(p for _, p, _ in got)) == {f"{i:06d}".encode() for i in range(COUNT)}
        # PUBACKs lost when B stopped: those publishes are sent again, under the same ids.
        assert len(got) - COUNT <= CONNECTIONS * PUBLISHING
        assert len({(p, props["bridge-msg-id"]) for _, p, props in got}) == COUNT
        assert wait_for(lambda: proc.metric("gateway_bridge_journal_unshipped_bytes") == 0)
        # The source connection stayed up throughout: the broker, not a reconnect loop, held it.
        assert proc.metric("gateway_bridge_source_reconnects_total") == 0
        # Drained through the buckets: past the bursts, each publish of the backlog waited
        # about 1 / rate for its token (loosely: at least half of that in total).
        throttled = proc.metric("gateway_bridge_destination_throttled_seconds_total")
        assert throttled >= 0.5 * (backlog - CONNECTIONS * BURST) / PER_CONNECTION, throttled
        assert proc.metric("gateway_bridge_destination_tokens_total") >= COUNT
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_a_source_faster_than_its_destination_stops_being_read(world: World) -> None:
    # Acknowledged only once delivered, messages wait in the window for the destination. QoS 0
    # has no Receive Maximum to hold the broker back: the bridge's inbox fills to twice the
    # window and then its socket is not read until the destination catches up. (Journaled, the
    # journal takes them at disk speed instead: the test above.)
    config = world.config(in_flight=4, connections=1, rate=50.0, burst=1, ack_policy="delivered")
    config.write_text(config.read_text().replace("qos = 1", "qos = 0"))
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    try:
        Publisher(world, "src/dev9/t", 150, rate=2000.0).join(timeout=30)
        assert wait_for(lambda: len(reader.snapshot()) == 150, timeout=30)
        assert sorted(p for _, p, _ in reader.snapshot()) == [
            f"{i:06d}".encode() for i in range(150)
        ]
        assert proc.metric("gateway_bridge_source_read_pauses_total") >= 1
        assert proc.metric("gateway_bridge_source_reading_paused") == 0
        assert proc.metric("gateway_bridge_source_reconnects_total") == 0
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()
