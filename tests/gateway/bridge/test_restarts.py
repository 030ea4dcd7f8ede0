"""At-least-once while everything restarts: broker A, broker B, and the bridge (SIGKILL), each in
the middle of a stream of numbered QoS 1 messages."""

from __future__ import annotations

from collections import Counter

from tests.gateway.bridge.harness import Publisher, Subscriber, World
from tests.gateway.gatewayproc import wait_for

COUNT = 600
RATE = 150.0
IN_FLIGHT = 16
CONNECTIONS, PUBLISHING = 2, 20  # the harness's pool; the default in_flight_per_connection


def test_every_message_arrives_through_restarts_of_a_b_and_the_bridge(world: World) -> None:
    config = world.config(in_flight=IN_FLIGHT)
    reader = Subscriber(world, "#")
    proc = world.start_bridge(config)
    publisher = Publisher(world, "src/dev1/t", COUNT, RATE)
    try:

        def arrived() -> int:
            return len({p for _, p, _ in reader.snapshot()})

        assert wait_for(lambda: arrived() >= COUNT // 5, timeout=30)
        world.a.restart()  # SIGTERM: mosquitto saves the bridge's session and its queue
        assert wait_for(lambda: arrived() >= 2 * COUNT // 5, timeout=30)
        world.b.restart()
        assert wait_for(lambda: arrived() >= 3 * COUNT // 5, timeout=30)
        proc.kill()  # SIGKILL: whatever it had not acknowledged, A delivers again
        proc = world.start_bridge(config)
        publisher.join(timeout=60)
        assert wait_for(lambda: arrived() == COUNT, timeout=30)

        got = reader.snapshot()
        counts = Counter(p for _, p, _ in got)
        assert set(counts) == {f"{seq:06d}".encode() for seq in range(COUNT)}
        assert {t for t, _, _ in got} == {"aws/in/dev1/t"}  # nothing came back round
        duplicates = len(got) - COUNT
        # A's restart replays at most its window (plus the publisher's own resend); B's the
        # publishes awaiting a PUBACK; the SIGKILL A's window again and what was shipped since
        # the cursor's last save (once a second: two seconds of traffic, loosely).
        assert duplicates <= 2 * IN_FLIGHT + 1 + CONNECTIONS * PUBLISHING + 2 * RATE, duplicates
        # Duplicates carry the same id, so a consumer can drop them.
        ids: dict[bytes, set[str]] = {}
        for _, payload, props in got:
            ids.setdefault(payload, set()).add(props["bridge-msg-id"])
        assert all(len(v) == 1 for v in ids.values())
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()
