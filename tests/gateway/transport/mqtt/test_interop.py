"""Clients nobody here wrote against the real ``gateway run``: Debian's mosquitto_pub and
mosquitto_sub (3.1.1 and 5.0, QoS 0/1/2, TLS, passwords, client certificates), paho-mqtt and
aiomqtt. What they were acknowledged for is in the sink under the right device id."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, read_records, wait_for
from tests.gateway.transport.mqtt.client import start_gateway
from tests.parser.streams import evb1_heartbeat
from tests.pki import Pki

VERSIONS = ("mqttv311", "mqttv5")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def pub(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-d", *args)


def raw_by_payload(gw: GatewayProcess) -> dict[bytes, dict[str, object]]:
    return {base64.b64decode(str(r["payload"])): r for r in read_records(gw.data_dir, "raw")}


def test_mosquitto_pub_both_versions_every_qos(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=("mqtt",))  # `--listen mqtt=127.0.0.1:0`
    sent: dict[bytes, str] = {}
    try:
        port = gw.ports["mqtt"]
        for v, version in enumerate(VERSIONS):
            for qos in (0, 1, 2):
                device = f"35630704244{v}{qos:03d}"
                frame = evb1_heartbeat(10 * v + qos + 1)
                (tmp_path / "frame").write_bytes(frame)
                done = pub(port, "-V", version, "-q", str(qos), "-t", f"ev/{device}/telemetry",
                           "-f", str(tmp_path / "frame"))  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
                if qos == 1:
                    assert "received PUBACK (Mid: 1, RC:0)" in done.stdout
                    # `delivered`: by the time the client holds its PUBACK the frame is on disk.
                    assert frame in raw_by_payload(gw)
                elif qos == 2:
                    assert "received PUBCOMP" in done.stdout
                    assert frame in raw_by_payload(gw)
                sent[frame] = device
        assert wait_for(lambda: set(sent) <= set(raw_by_payload(gw)))
        assert gw.metric("gateway_mqtt_publishes_total", qos="1") == 2
        assert gw.metric("gateway_frames_total", codec="evb1", transport="mqtt") == 6
        # The bytes that carried them are counted by the same codec label as the frames.
        payload_bytes = sum(len(frame) for frame in sent)
        assert gw.metric("gateway_received_bytes_total", codec="evb1") == payload_bytes
        assert gw.metric("gateway_received_bytes_total", codec="mqtt") > 0  # the protocol's
        # Acknowledgements of data only: 2 PUBACKs and 2 PUBRECs, not the 6 CONNACKs or the
        # PUBCOMPs, as TCP counts ACKs of frames.
        assert gw.metric("gateway_acks_total", transport="mqtt") == 4
    finally:
        assert gw.stop() == 0
    raw = raw_by_payload(gw)
    for frame, device in sent.items():
        record = raw[frame]
        assert (record["device_id"], record["codec"], record["transport"]) == (
            device, "evb1", "mqtt")  # fmt: skip
    parsed = read_records(gw.data_dir, "parsed")
    assert {p["device_id"] for p in parsed} == set(sent.values())
    assert {p["kind"] for p in parsed} == {"heartbeat"}


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_sub_gets_only_its_own_command_topic(tmp_path: Path, version: str) -> None:
    gw = start_gateway(tmp_path)
    try:
        port = gw.ports["mqtt"]
        sub = ["mosquitto_sub", "-V", version, "-h", "127.0.0.1", "-p", str(port), "-d", "-W", "1"]
        own = run(*sub, "-q", "1", "-t", "ev/356307042441013/command")
        assert "Subscribed (mid: 1): 1" in own.stdout, own.stdout + own.stderr
        other = run(*sub, "-t", "ev/+/telemetry")
        code = 128 if version == "mqttv311" else 0x87
        assert f"Subscribed (mid: 1): {code}" in other.stdout, other.stdout + other.stderr
        assert "All subscription requests were denied" in other.stdout + other.stderr
        assert gw.metric("gateway_rejects_total", reason="subscribe_refused") == 1
    finally:
        assert gw.stop() == 0


def test_tls_with_passwords_from_gateway_passwd(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    cert, key = pki.issue("server", "localhost", server=True)
    passwd = tmp_path / "passwd"
    for user, password in (("356307042441013", "s3cret"), ("356307042441099", "other")):
        made = run(GATEWAY, "passwd", str(passwd), user, "-b", password)
        assert made.returncode == 0, made.stderr
    assert "s3cret" not in passwd.read_text()
    gw = start_gateway(
        tmp_path,
        f"auth = 'password'\npassword_file = '{passwd}'\nidentity = 'username'\n"
        f"tls = {{ cert_file = '{cert}', key_file = '{key}' }}\n",
    )
    frame = evb1_heartbeat(42)
    (tmp_path / "frame").write_bytes(frame)
    try:
        port = gw.ports["mqtt"]
        tls = ["--cafile", str(pki.ca_cert), "-h", "localhost", "-q", "1"]
        tls += ["-f", str(tmp_path / "frame")]
        for version in VERSIONS:
            ok = pub(port, *tls, "-V", version, "-u", "356307042441013", "-P", "s3cret",
                     "-t", "ev/356307042441013/telemetry")  # fmt: skip
            assert "received PUBACK (Mid: 1, RC:0)" in ok.stdout, ok.stdout + ok.stderr
            wrong = pub(port, *tls, "-V", version, "-u", "356307042441013", "-P", "guess",
                        "-t", "ev/356307042441013/telemetry")  # fmt: skip
            assert wrong.returncode != 0
            assert "bad user name or password" in (wrong.stdout + wrong.stderr).lower()
        # Authenticated, but publishing under another device's id: 5.0 gets PUBACK 0x87.
        spoof = pub(port, *tls, "-V", "mqttv5", "-u", "356307042441013", "-P", "s3cret",
                    "-t", "ev/356307042441099/telemetry")  # fmt: skip
        assert "received PUBACK (Mid: 1, RC:135)" in spoof.stdout, spoof.stdout + spoof.stderr
        assert gw.metric("gateway_rejects_total", reason="bad_credentials") == 2
        assert gw.metric("gateway_rejects_total", reason="identity_mismatch") == 1
    finally:
        assert gw.stop() == 0
    devices = {r["device_id"] for r in read_records(gw.data_dir, "raw")}
    assert devices == {"356307042441013"}
    assert len(read_records(gw.data_dir, "raw")) == 2


def test_client_certificate_names_the_device(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    cert, key = pki.issue("server", "localhost", server=True)
    device_cert, device_key = pki.issue("dev", "356307042441077")
    gw = start_gateway(
        tmp_path,
        "auth = 'certificate'\nidentity = 'certificate'\nroutes = [{ topic = 'tele/{device_id}', "
        "codec = 'evb1' }, { topic = 'tele', codec = 'evb1' }]\n"
        f"tls = {{ cert_file = '{cert}', key_file = '{key}', client_ca_file = '{pki.ca_cert}' }}\n",
    )
    frames = [evb1_heartbeat(1), evb1_heartbeat(2)]
    try:
        port = gw.ports["mqtt"]
        base = ["--cafile", str(pki.ca_cert), "-h", "localhost", "-q", "1", "-V", "mqttv5"]
        for topic, frame in zip(("tele/356307042441077", "tele"), frames, strict=True):
            (tmp_path / "frame").write_bytes(frame)
            ok = pub(port, *base, "--cert", str(device_cert), "--key", str(device_key),
                     "-t", topic, "-f", str(tmp_path / "frame"))  # fmt: skip
            assert "received PUBACK (Mid: 1, RC:0)" in ok.stdout, ok.stdout + ok.stderr
        anonymous = pub(port, *base, "-t", "tele", "-m", "x")
        assert anonymous.returncode != 0  # no client certificate: the handshake fails
    finally:
        assert gw.stop() == 0
    raw = read_records(gw.data_dir, "raw")
    assert sorted(base64.b64decode(r["payload"]) for r in raw) == sorted(frames)
    assert {r["device_id"] for r in raw} == {"356307042441077"}


def test_paho_and_aiomqtt_publish(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, "ack_policy = 'accepted'")
    port = gw.ports["mqtt"]
    sent: dict[bytes, str] = {}
    try:
        for version, protocol in (("3", MQTTProtocolVersion.MQTTv311),
                                  ("5", MQTTProtocolVersion.MQTTv5)):  # fmt: skip
            device = f"35630704244{version}555"
            client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
            client.connect("127.0.0.1", port)
            client.loop_start()
            infos = []
            for seq in range(1, 11):
                frame = evb1_heartbeat(seq + 100 * int(version))
                sent[frame] = device
                infos.append(client.publish(f"ev/{device}/telemetry", frame, qos=1))
            for info in infos:
                info.wait_for_publish(timeout=10)
                assert info.is_published()
            client.disconnect()
            client.loop_stop()

        async def aio() -> None:
            for protocol in (aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5):
                device = f"3563070424{protocol.value:02d}777"
                async with aiomqtt.Client("127.0.0.1", port, protocol=protocol) as client:
                    for seq in range(1, 6):
                        frame = evb1_heartbeat(seq + 1000 * protocol.value)
                        sent[frame] = device
                        await client.publish(f"ev/{device}/telemetry", frame, qos=1)

        asyncio.run(aio())
        assert wait_for(lambda: set(sent) <= set(raw_by_payload(gw)))
    finally:
        assert gw.stop() == 0
    raw = raw_by_payload(gw)
    assert {frame: raw[frame]["device_id"] for frame in sent} == sent


def test_a_real_clients_will_is_stored_when_it_dies_and_retain_is_declined(tmp_path: Path) -> None:
    """mosquitto_sub with a will, killed (-9): the gateway stores the will on its routed topic;
    one that disconnects normally (3.1.1) leaves none. mosquitto_pub 5.0 -r reads CONNACK's Retain
    Available 0 and publishes without the flag: stored and acknowledged, never refused."""
    routes = (
        "routes = [{ topic = 'ev/{device_id}/telemetry', codec = 'evb1' }, "
        "{ topic = 'ev/{device_id}/status', codec = 'json' }]"
    )
    gw = start_gateway(tmp_path, routes)
    dying = b'{"ts": 1718000000, "kind": "alarm", "metrics": {"online": 0}}'
    try:
        port = gw.ports["mqtt"]
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-d"]

        def with_will(device: str, payload: str) -> list[str]:
            return [*sub, "-i", device, "-t", f"ev/{device}/command",
                    "--will-topic", f"ev/{device}/status", "--will-payload", payload]  # fmt: skip

        # 3.1.1: its DISCONNECT at the timeout discards the will (5.0's says "with will").
        polite = run(*with_will("EV-POLITE", "bye"), "-W", "1", "-V", "mqttv311")
        assert "received CONNACK (0)" in polite.stdout, polite.stdout + polite.stderr
        dies = subprocess.Popen(with_will("EV-DIES", dying.decode()), stdout=subprocess.DEVNULL)
        assert wait_for(lambda: gw.metric("gateway_connections_open", transport="mqtt") == 1)
        dies.kill()  # no DISCONNECT: the network connection just ends
        dies.wait(10)
        assert wait_for(lambda: gw.metric("gateway_mqtt_wills_total") == 1)

        (tmp_path / "frame").write_bytes(evb1_heartbeat(7))
        retained = pub(port, "-V", "mqttv5", "-r", "-q", "1", "-t", "ev/EV-DIES/telemetry",
                       "-f", str(tmp_path / "frame"))  # fmt: skip
        assert "received PUBACK (Mid: 1, RC:0)" in retained.stdout, retained.stdout
        assert "r0" in retained.stdout  # the client dropped the flag it was told is unavailable
    finally:
        assert gw.stop() == 0
    raw = read_records(gw.data_dir, "raw")
    assert [(r["device_id"], r["codec"]) for r in raw] == [("EV-DIES", "json"), ("EV-DIES", "evb1")]
    assert base64.b64decode(raw[0]["payload"]) == dying
    (parsed,) = [p for p in read_records(gw.data_dir, "parsed") if p["codec"] == "json"]
    assert parsed["metrics"] == {"online": 0}
