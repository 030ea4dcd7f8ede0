"""MQTT settings end to end: ``gateway passwd``, ``check-config`` errors, SIGHUP reload of
routes and passwords, and a named JSON mapping that live and ``gateway replay`` decode alike."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.common.settings_base import ConfigError
from gateway.transport.mqtt.passwords import PasswordChecker, read_password_file, verify_password
from gateway.transport.mqtt.settings import MqttListenerSettings, parse_mqtt_listen
from parser.mqtt.packets import MQTT_5, ConnAck, PubAck, ReasonCode
from tests.gateway.gatewayproc import GATEWAY, read_records, wait_for
from tests.gateway.transport.mqtt.client import MqttTestClient, start_gateway
from tests.parser.streams import evb1_heartbeat


def gateway(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_gateway_passwd_writes_salted_hashes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert gateway("passwd", str(path), "dev1", "-b", "one").returncode == 0
    prompted = gateway("passwd", str(path), "dev2", stdin="two\ntwo\n")  # no TTY: stdin
    assert prompted.returncode == 0, prompted.stderr
    assert gateway("passwd", str(path), "dev1", "-b", "one").returncode == 0  # re-salted
    users = read_password_file(path)
    assert sorted(users) == ["dev1", "dev2"]
    assert verify_password(users["dev1"], "one") and verify_password(users["dev2"], "two")
    assert not verify_password(users["dev1"], "two")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "one" not in path.read_text() and "two" not in path.read_text()

    mismatch = gateway("passwd", str(path), "dev3", stdin="a\nb\n")
    assert (mismatch.returncode, "do not match" in mismatch.stderr) == (2, True)
    assert gateway("passwd", str(path), "dev2", "-D").returncode == 0
    gone = gateway("passwd", str(path), "dev2", "-D")
    assert (gone.returncode, gone.stderr.strip()) == (2, f"gateway passwd: {path}: no user 'dev2'")
    assert gateway("passwd", str(path), "a:b", "-b", "x").returncode == 2
    path.write_text("dev1:plaintext\n")
    broken = gateway("passwd", str(path), "dev9", "-b", "x")
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert f"{path}:1: not a `user:scrypt$...` line" in broken.stderr


def test_password_checker_remembers_only_successes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert gateway("passwd", str(path), "dev1", "-b", "one").returncode == 0
    checker = PasswordChecker.load(path)
    assert checker.remembered("dev1", b"one") is False  # unknown yet: needs the slow check

    async def check(password: bytes) -> bool:
        return await checker.check("dev1", password)

    assert asyncio.run(check(b"wrong")) is False
    assert checker.remembered("dev1", b"one") is False
    assert asyncio.run(check(b"one")) is True
    assert checker.remembered("dev1", b"one") is True
    assert checker.remembered("dev1", b"wrong") is False  # not an answer: check() decides


def test_unknown_users_cost_the_same_scrypt_as_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instant "no" for an unknown user (or a known one's wrong password) tells an attacker
    by timing which user names exist; every "no" runs scrypt with the stored parameters."""
    path = tmp_path / "passwd"
    assert gateway("passwd", str(path), "dev1", "-b", "one").returncode == 0
    (known,) = read_password_file(path).values()
    checker = PasswordChecker.load(path)
    costs: list[str] = []

    def counted(stored: str, password: str | bytes) -> bool:
        costs.append("$".join(stored.split("$")[:4]))  # scheme and N, r, p: the work
        return verify_password(stored, password)

    monkeypatch.setattr("gateway.transport.mqtt.passwords.verify_password", counted)

    async def answers() -> list[bool]:
        return [await checker.check(user, password) for user, password in
                (("nobody", b"x"), ("dev1", b"wrong"), ("dev1", b"one"),
                 ("dev1", b"wrong"), ("nobody", b"one"))]  # fmt: skip

    assert asyncio.run(answers()) == [False, False, True, False, False]
    assert costs == ["$".join(known.split("$")[:4])] * 5


@pytest.mark.parametrize(
    ("listener", "problem"),
    [
        ("auth = 'password'", "auth = 'password' needs password_file"),
        ("identity = 'certificate'", "client certificates need tls.client_ca_file"),
        (  # a password that does not name the device would let it publish as any other
            "auth = 'password'\npassword_file = 'p'",
            "auth = 'password' needs identity = 'username' (else any device that logs in may",
        ),
        ("auth = 'certificate'\nidentity = 'client_id'", "needs identity = 'certificate'"),
        ("routes = [{ topic = 'tele/all', codec = 'evb1' }]", "has no {device_id} level"),
        ("routes = [{ topic = 'ev/+/t' }]", "use {name} levels, not MQTT wildcards"),
        ("routes = [{ topic = 'ev/{device_id}', codec = 'nope' }]", "unknown codec 'nope'"),
        ("receive_maximum = 0", "receive_maximum: Input should be greater than or equal to 1"),
        (  # reachable from other machines: whether anyone may connect must be said
            "host = '0.0.0.0'",
            "host '0.0.0.0' is reachable from other machines and auth is not set: set auth",
        ),
    ],
)
def test_check_config_names_the_problem(tmp_path: Path, listener: str, problem: str) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f"[[mqtt_listeners]]\nport = 1883\n{listener}\n")
    result = gateway("check-config", str(config))
    assert result.returncode == 2
    assert problem in result.stderr and "Traceback" not in result.stderr


def test_listener_defaults_are_loopback_and_auth_none_only_there_unless_said() -> None:
    assert MqttListenerSettings().host == "127.0.0.1"
    assert MqttListenerSettings(host="0.0.0.0", auth="none").auth == "none"  # said explicitly
    assert MqttListenerSettings(host="::1").auth == "none"
    for host in ("0.0.0.0", "10.1.2.3", "", "mqtt.example.com"):
        with pytest.raises(ValidationError, match="auth is not set"):
            MqttListenerSettings(host=host)
    with pytest.raises(ConfigError, match="auth is not set"):
        parse_mqtt_listen("mqtt=0.0.0.0:1883")
    assert parse_mqtt_listen("mqtt=127.0.0.1:1883").auth == "none"


def test_sighup_reloads_routes_and_passwords(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    assert gateway("passwd", str(passwd), "dev1", "-b", "old").returncode == 0
    listener = (
        "auth = 'password'\npassword_file = '{passwd}'\nidentity = 'username'\n"
        "routes = [{{ topic = '{route}', codec = 'evb1' }}]\n"
    )
    gw = start_gateway(tmp_path, listener.format(passwd=passwd, route="a/{device_id}"))
    try:
        port = gw.ports["mqtt"]
        kept = MqttTestClient(port, MQTT_5)
        assert kept.connect("kept", username="dev1", password=b"old").reason_code == 0
        assert gateway("passwd", str(passwd), "dev1", "-b", "new").returncode == 0
        text = (tmp_path / "gw.toml").read_text().replace("port = 0", f"port = {port}")
        (tmp_path / "gw.toml").write_text(text.replace("a/{device_id}", "b/{device_id}"))
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: bool(gw.events("reloaded")), timeout=10)

        old = MqttTestClient(port, MQTT_5)
        refused = old.connect("old", username="dev1", password=b"old")
        assert refused.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
        new = MqttTestClient(port, MQTT_5)
        assert new.connect("new", username="dev1", password=b"new").reason_code == 0
        new.publish(evb1_heartbeat(1), 1, 1, topic="b/dev1")
        assert new.expect(PubAck).reason_code == ReasonCode.SUCCESS
        new.publish(evb1_heartbeat(2), 1, 2, topic="a/dev1")
        assert new.expect(PubAck).reason_code == ReasonCode.TOPIC_NAME_INVALID
        kept.publish(evb1_heartbeat(3), 1, 1, topic="b/dev1")  # the open connection stays
        assert kept.expect(PubAck).reason_code == ReasonCode.SUCCESS
        new.close()
        kept.close()
    finally:
        assert gw.stop() == 0


def test_named_json_mapping_live_and_replayed_alike(tmp_path: Path) -> None:
    top = (
        "[json_codecs.acme]\nts = 'time'\nlat = 'gps.lat'\nlon = 'gps.lon'\n"
        "metrics_object = ''\n[json_codecs.acme.metrics]\nsoc_pct = 'battery.soc'\n"
    )
    routes = "routes = [{ topic = 'acme/{device_id}/json', codec = 'acme' }]\n"
    gw = start_gateway(tmp_path, routes, top)
    doc = {"time": 1718000000, "gps": {"lat": 48.1, "lon": 11.6}, "battery": {"soc": 64.5}}
    try:
        port = gw.ports["mqtt"]
        done = subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
             "-t", "acme/ACME-7/json", "-m", json.dumps(doc)],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        assert gw.stop() == 0
    (parsed,) = read_records(gw.data_dir, "parsed")
    assert (parsed["device_id"], parsed["codec"], parsed["ts"]) == (
        "ACME-7", "acme", "2024-06-10T06:13:20.000Z")  # fmt: skip
    assert parsed["position"]["lat"] == 48.1 and parsed["metrics"] == {"soc_pct": 64.5}
    out = tmp_path / "replayed"
    replayed = gateway("replay", "--config", str(tmp_path / "gw.toml"), "--data-dir", str(out),
                       str(gw.data_dir / "raw"))  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert read_records(out, "parsed") == [parsed]


def test_decode_and_connack_properties(tmp_path: Path) -> None:
    """``gateway decode --codec json`` and what a 5.0 client learns from the CONNACK."""
    doc = tmp_path / "doc.json"
    doc.write_text('{"ts": 1718000000, "metrics": {"soc_pct": 81}}')
    decoded = gateway("decode", "--codec", "json", "--file", str(doc), "--format", "binary")
    (line,) = [json.loads(x) for x in decoded.stdout.splitlines()]
    assert line["records"][0]["metrics"] == {"soc_pct": 81}
    gw = start_gateway(tmp_path, "receive_maximum = 32\nmax_packet_bytes = 4096")
    try:
        client = MqttTestClient(gw.ports["mqtt"], MQTT_5)
        connack = client.connect("")
        assert isinstance(connack, ConnAck)
        props = connack.properties
        assert (props.receive_maximum, props.maximum_packet_size) == (32, 4096)
        assert (props.assigned_client_identifier or "").startswith("gw-")
        client.close()
    finally:
        assert gw.stop() == 0
