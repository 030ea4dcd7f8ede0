"""``gateway bridge`` between real brokers: topics mapped, payloads exact, frames into the
pipeline, the bridge's own copies never forwarded again, connection state in STATUS and /readyz."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.gateway.bridge.harness import B_ACL, Subscriber, World
from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.parser.streams import evb1_heartbeat

PIPELINE_ROUTE = """
[[bridge.routes]]
name = "frames"
source = "azure"
topic = "src/{device_id}/evb1"
codec = "evb1"
"""


def test_messages_reach_b_with_mapped_topics_and_the_pipeline_as_frames(world: World) -> None:
    reader = Subscriber(world, "#")
    proc = world.start_bridge(world.config(routes=PIPELINE_ROUTE))
    try:
        payloads = {f"dev{i}": bytes([i, 0, 255, 10]) + f"reading {i}".encode() for i in range(5)}
        for device, payload in payloads.items():
            world.mosquitto_pub(f"src/{device}/t", payload)
        frames = {f"86100000000000{i}": evb1_heartbeat(i) for i in range(3)}
        for device, frame in frames.items():
            world.mosquitto_pub(f"src/{device}/evb1", frame)
        world.mosquitto_pub("src/861000000000009/evb1", b"not a frame")

        assert wait_for(lambda: len(reader.snapshot()) >= 5)
        got = reader.snapshot()
        assert {(t, p) for t, p, _ in got} == {
            (f"aws/in/{device}/t", payload) for device, payload in payloads.items()
        }
        for _, _, props in got:
            assert props["bridged-by"] == "ev-gateway-bridge"
            assert len(props["bridge-msg-id"]) == 32

        assert wait_for(lambda: proc.metric("gateway_bridge_acknowledged_total") == 9)
        raw = read_records(proc.data_dir, "raw")
        by_device = {r["device_id"]: r for r in raw}
        assert set(by_device) == {*frames, "861000000000009"}
        for device in frames:
            assert by_device[device]["transport"] == "mqtt-bridge"
            assert by_device[device]["peer"].startswith("azure;bridge-msg-id=")
        parsed = read_records(proc.data_dir, "parsed")
        assert sorted(r["device_id"] for r in parsed) == sorted(frames)
        assert {r["metrics"]["uptime_s"] for r in parsed} == {0, 1, 2}
        # Not one frame: kept raw with an error record, acknowledged, counted.
        errors = read_records(proc.data_dir, "errors")
        assert [(e["device_id"], e["reason"]) for e in errors] == [
            ("861000000000009", "not_one_frame")
        ]
        assert proc.metric("gateway_bridge_rejected_total", route="frames") == 1
        assert proc.metric("gateway_bridge_in_flight") == 0
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_copies_published_back_into_the_source_broker_are_not_forwarded_again(
    world: World,
) -> None:
    # A route republishing into A itself, on topics A's subscription delivers back to the
    # bridge: without loop prevention every message would circle forever.
    echo = f"""
[[bridge.destinations]]
name = "azure-again"
host = "127.0.0.1"
port = {world.a.port}
client_id_prefix = "ev-bridge-echo"
tls = {world.tls(client_cert=True)}

[[bridge.routes]]
name = "echo"
source = "azure"
topic = "src/{{device_id}}/{{kind}}"
destination = "azure-again"
destination_topic = "src/{{device_id}}/copy"
"""
    proc = world.start_bridge(world.config(routes=echo))
    try:
        for i in range(5):
            world.mosquitto_pub(f"src/dev{i}/raw", f"{i}".encode())
        assert wait_for(lambda: proc.metric("gateway_bridge_loops_dropped_total") == 5)
        assert proc.metric("gateway_bridge_received_total", route="echo") == 5
        assert proc.metric("gateway_bridge_acknowledged_total", route="echo") == 5
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_status_and_readiness_follow_the_source_connection(world: World, tmp_path: Path) -> None:
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.settimeout(5.0)
    seen: list[bytes] = []

    def status_says(text: str) -> bool:
        while not any(text.encode() in m for m in seen):
            seen.append(systemd.recv(4096))
        return True

    env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    proc = world.start_bridge(world.config(extra="source_down_after_s = 0.5"), env)
    try:
        assert status_says("STATUS=serving no device ports; sink local; bridge azure connected")
        assert proc.health_url is not None
        ready = f"{proc.health_url}/readyz"
        with urllib.request.urlopen(ready, timeout=5) as response:
            assert response.status == 200
        world.a.stop()
        assert status_says("bridge azure disconnected")

        def not_ready() -> bool:
            try:
                urllib.request.urlopen(ready, timeout=5).close()
            except urllib.error.HTTPError as exc:
                return exc.code == 503 and b"no bridge source connected" in exc.read()
            return False

        assert wait_for(not_ready)
        world.a.start()
        assert status_says("bridge azure connected")
        assert proc.stop() == 0
    finally:
        proc.kill()
        systemd.close()


def test_a_message_the_destination_refuses_is_held_and_retried_not_dropped(world: World) -> None:
    # MQTT 5: mosquitto answers a publish its ACL denies with PUBACK 0x87 (not authorized).
    deny = "topic deny aws/in/denied/#\ntopic readwrite #"
    world.b.acl_path().write_text(B_ACL.replace("topic readwrite #", deny, 1))
    world.b.reload()
    reader = Subscriber(world, "#")
    proc = world.start_bridge(world.config())
    try:
        world.mosquitto_pub("src/denied/t", b"held")
        world.mosquitto_pub("src/dev1/t", b"after")
        assert wait_for(lambda: proc.events("destination refused a message; retrying it"))
        # Held in the journal (A has its acknowledgements: they are journaled), not dropped.
        assert proc.metric("gateway_bridge_journal_unshipped_bytes") > 0
        world.b.acl_path().write_text(B_ACL)  # the policy is fixed
        world.b.reload()
        assert wait_for(lambda: len(reader.snapshot()) >= 2, timeout=20)
        assert {(t, p) for t, p, _ in reader.snapshot()} == {
            ("aws/in/denied/t", b"held"),
            ("aws/in/dev1/t", b"after"),
        }
        assert proc.metric("gateway_bridge_acknowledged_total") == 2
        assert wait_for(lambda: proc.metric("gateway_bridge_journal_unshipped_bytes") == 0)
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()


def test_the_bridge_section_also_runs_inside_gateway_run(world: World) -> None:
    reader = Subscriber(world, "#")
    proc = GatewayProcess(
        world.directory / "data", codecs=("evb1",), config=world.config(), command="run"
    )
    try:
        assert proc.ports["evb1"]  # device listeners and the bridge side by side
        assert wait_for(lambda: proc.metric("gateway_bridge_source_connected") == 1)
        world.mosquitto_pub("src/dev5/t", b"via run")
        assert wait_for(lambda: len(reader.snapshot()) == 1)
        assert reader.snapshot()[0][:2] == ("aws/in/dev5/t", b"via run")
        assert proc.stop() == 0
    finally:
        proc.kill()
        reader.close()
