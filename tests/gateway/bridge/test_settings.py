"""The [bridge] section: what would lose, downgrade or loop messages is refused with a clear
line naming the setting; passwords come from files or the environment and never show."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.bridge.settings import filters_overlap
from gateway.settings import ConfigError, load_settings
from tests.gateway.gatewayproc import GATEWAY

ROOT = Path(__file__).resolve().parents[3]

SOURCE = """
[[bridge.sources]]
name = "azure"
host = "broker.example"
client_id = "bridge-1"
protocol = "{source_protocol}"
subscriptions = [{{ filter = "src/#", qos = {qos} }}]
"""
DESTINATION = """
[[bridge.destinations]]
name = "aws"
host = "{dest_host}"
client_id_prefix = "out"
protocol = "{dest_protocol}"
"""
ROUTE = """
[[bridge.routes]]
name = "telemetry"
source = "azure"
topic = "src/{{device_id}}/t"
destination = "aws"
destination_topic = "{out}"
"""


def config(
    tmp_path: Path,
    *,
    qos: int = 1,
    source_protocol: str = "5",
    dest_protocol: str = "5",
    dest_host: str = "aws.example",
    out: str = "aws/{device_id}/t",
    extra: str = "",
) -> Path:
    text = "[bridge]\n" + SOURCE + DESTINATION + ROUTE
    text = text.format(
        qos=qos,
        source_protocol=source_protocol,
        dest_protocol=dest_protocol,
        dest_host=dest_host,
        out=out,
    )
    path = tmp_path / "bridge.toml"
    path.write_text(text + extra)
    return path


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATEWAY, *args], check=False, capture_output=True, text=True, timeout=60)


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return "\n".join(caught.value.problems)


def test_example_is_valid(tmp_path: Path) -> None:
    # Its certificate paths must exist; point them at empty files here.
    text = (ROOT / "config" / "bridge-example.toml").read_text()
    text = text.replace("/etc/ev-gateway/bridge/", f"{tmp_path}/").replace(
        "/var/lib/ev-gateway", str(tmp_path / "data")
    )
    for name in ("azure-client.pem", "azure-client.key", "AmazonRootCA1.pem"):
        (tmp_path / name).touch()
    (tmp_path / "aws-client.pem").touch()
    (tmp_path / "aws-client.key").touch()
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    bridge = load_settings(path).bridge
    assert bridge is not None
    assert [r.destination for r in bridge.routes] == ["aws-iot", "pipeline"]
    assert bridge.sources[0].subscriptions[0].topic_filter == "$share/ev-bridges/fleet/+/telemetry"
    result = subprocess.run(
        [GATEWAY, "check-config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "bridge ok (1 sources, 2 routes, 1 destinations)" in result.stdout


def test_a_qos_the_destination_cannot_take_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, qos=1)
    prefix = 'client_id_prefix = "out"\n'
    path.write_text(path.read_text().replace(prefix, prefix + "max_qos = 0\n"))
    assert "never lowers QoS" in problems(path)


def test_qos_2_subscriptions_are_refused(tmp_path: Path) -> None:
    assert "subscriptions.0.qos" in problems(config(tmp_path, qos=2))


def test_republishing_into_the_source_broker_under_311_is_refused(tmp_path: Path) -> None:
    host, out = "BROKER.example", "src/{device_id}/copy"
    path = config(tmp_path, dest_host=host, out=out, source_protocol="3.1.1")
    assert "under MQTT 3.1.1 that loops" in problems(path)
    path = config(tmp_path, dest_host=host, out=out, dest_protocol="3.1.1")
    assert "under MQTT 3.1.1 that loops" in problems(path)
    # MQTT 5 on both sides: the bridged-by mark breaks the loop, so it is allowed.
    assert load_settings(config(tmp_path, dest_host=host, out=out)).bridge is not None
    # 3.1.1 on topics the subscription does not cover is fine.
    disjoint = config(tmp_path, source_protocol="3.1.1", dest_host="broker.example")
    assert load_settings(disjoint).bridge is not None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[[bridge.routes]]\nname = "x"\nsource = "nowhere"\ntopic = "src/{device_id}/x"\n'
            'codec = "evb1"\n',
            "route 'x': no source named 'nowhere'",
        ),
        (
            '[[bridge.routes]]\nname = "x"\nsource = "azure"\ntopic = "src/{device_id}/x"\n'
            'destination = "gcp"\ndestination_topic = "a/b"\n',
            "route 'x': no destination named 'gcp'",
        ),
        (
            '[[bridge.routes]]\nname = "x"\nsource = "azure"\ntopic = "src/{id}/x"\n'
            'codec = "evb1"\n',
            "needs a {device_id} level",
        ),
        (
            '[[bridge.routes]]\nname = "x"\nsource = "azure"\ntopic = "src/{device_id}/x"\n',
            "a pipeline route needs a codec",
        ),
        (
            '[[bridge.routes]]\nname = "x"\nsource = "azure"\ntopic = "src/{device_id}/x"\n'
            'destination = "aws"\ndestination_topic = "a/{vin}"\n',
            "destination_topic uses ['vin'], which topic lacks",
        ),
        (
            '[[bridge.routes]]\nname = "telemetry"\nsource = "azure"\ntopic = "src/{a}/x"\n'
            'destination = "aws"\ndestination_topic = "a/b"\n',
            "two routes named 'telemetry'",
        ),
        (
            '[[bridge.routes]]\nname = "x"\nsource = "azure"\ntopic = "src/+/x"\n'
            'destination = "aws"\ndestination_topic = "a/b"\n',
            "not MQTT wildcards",
        ),
    ],
)
def test_route_mistakes_are_named(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in problems(config(tmp_path, extra=extra))


def test_a_subscription_no_route_takes_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path)
    path.write_text(path.read_text().replace('filter = "src/#"', 'filter = "other/#"'))
    assert "no route takes the topics of subscription 'other/#'" in problems(path)


def test_tls_and_password_files_must_exist(tmp_path: Path) -> None:
    path = config(tmp_path)
    base = path.read_text()
    path.write_text(
        base.replace(
            'client_id_prefix = "out"',
            f'client_id_prefix = "out"\ntls = {{ ca_file = "{tmp_path}/ca.pem" }}',
        )
    )
    assert f"bridge.destinations.0.tls: {tmp_path}/ca.pem: no such file" in problems(path)
    path.write_text(
        base.replace(
            'client_id_prefix = "out"',
            f'client_id_prefix = "out"\nusername = "u"\npassword_file = "{tmp_path}/none"',
        )
    )
    expected = f"bridge.destinations.0: password_file {tmp_path}/none: No such file or directory"
    assert expected in problems(path)


def test_passwords_come_from_a_file_or_the_environment_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    path = config(tmp_path)
    base = path.read_text()
    path.write_text(
        base.replace(
            'client_id_prefix = "out"',
            f'client_id_prefix = "out"\nusername = "u"\npassword_file = "{secret}"',
        )
    )
    settings = load_settings(path)
    assert settings.bridge is not None
    password = settings.bridge.destinations[0].password
    assert password is not None and password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings) + settings.model_dump_json()

    path.write_text(
        base.replace(
            'client_id_prefix = "out"',
            'client_id_prefix = "out"\nusername = "u"\npassword_env = "AWS_MQTT_PASSWORD"',
        )
    )
    assert "$AWS_MQTT_PASSWORD is not set" in problems(path)
    monkeypatch.setenv("AWS_MQTT_PASSWORD", "from-env")
    settings = load_settings(path)
    assert settings.bridge is not None
    password = settings.bridge.destinations[0].password
    assert password is not None and password.get_secret_value() == "from-env"


def test_check_config_prints_every_problem_without_a_traceback(tmp_path: Path) -> None:
    path = config(tmp_path, extra='[[bridge.routes]]\nname = "f"\nsource = "azure"\n'
                  'topic = "src/{device_id}/f"\ncodec = "nope"\n')  # fmt: skip
    result = subprocess.run(
        [GATEWAY, "check-config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "gateway check-config: bridge.routes.1.codec: unknown codec 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    result = gateway("bridge", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a/+/c", "a/b/#", True),
        ("a/#", "a", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b/c", False),
        ("+/x", "y/+", True),
        ("a", "a/b", False),
    ],
)
def test_filter_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap
