"""The bridge tests' world: broker A plays Azure (mutual TLS), broker B the AWS-side endpoint
(password over TLS); paho clients publish numbered messages on A and collect what reaches B."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from gateway.bridge.client import new_properties
from tests.gateway.gatewayproc import GatewayProcess, wait_for
from tests.mqtt_broker import BrokerListener, MosquittoBroker, issued
from tests.pki import Pki

B_USER, B_PASSWORD = "aws-bridge", "s3cret-pw"
SUBSCRIBER_USER, SUBSCRIBER_PASSWORD = "aws-reader", "reader-pw"
# The bridge may publish anywhere on B, the test's reader read everything.
B_ACL = f"user {B_USER}\ntopic readwrite #\nuser {SUBSCRIBER_USER}\ntopic read #\n"
# Backlogs of a few hundred messages stay queued at A for the bridge (mosquitto's default is
# 1,000 QoS 1 messages per client, past which it drops them).
A_EXTRA = "max_queued_messages 100000"


@dataclass
class World:
    directory: Path
    pki: Pki
    a: MosquittoBroker
    b: MosquittoBroker
    bridge_cert: tuple[Path, Path]
    publisher_cert: tuple[Path, Path]

    @classmethod
    def create(cls, directory: Path, pki: Pki) -> World:
        a = MosquittoBroker(
            directory / "broker-a", [BrokerListener(tls=True, client_certs=True)], pki, A_EXTRA
        )
        users = ((B_USER, B_PASSWORD), (SUBSCRIBER_USER, SUBSCRIBER_PASSWORD))
        b = MosquittoBroker(
            directory / "broker-b", [BrokerListener(tls=True, users=users, acl=B_ACL)], pki
        )
        password = directory / "b-password"
        password.write_text(f"{B_PASSWORD}\n")
        return cls(
            directory,
            pki,
            a,
            b,
            issued(pki, "bridge-client", "bridge-client"),
            issued(pki, "publisher", "publisher"),
        )

    def stop(self) -> None:
        self.a.kill()
        self.b.kill()

    def config(
        self,
        *,
        in_flight: int = 16,
        connections: int = 2,
        rate: float = 1000.0,
        burst: int = 10,
        protocol: str = "5",
        ack_policy: str = "journaled",
        routes: str = "",
        extra: str = "",
    ) -> Path:
        """A ``[bridge]`` settings file: source A, destination B (both speaking ``protocol``),
        the ``telemetry`` route (``src/{device_id}/t`` -> ``aws/in/{device_id}/t``, acknowledging
        A per ``ack_policy``) and ``routes``."""
        path = self.directory / "bridge.toml"
        path.write_text(
            f"""
shutdown_timeout_s = 5.0
[bridge]
in_flight = {in_flight}
backoff_base_s = 0.1
backoff_cap_s = 1.0
{extra}

[[bridge.sources]]
name = "azure"
host = "127.0.0.1"
port = {self.a.port}
protocol = "{protocol}"
client_id = "ev-bridge-1"
tls = {self.tls(client_cert=True)}
subscriptions = [{{ filter = "src/#", qos = 1 }}]

[[bridge.destinations]]
name = "aws"
host = "127.0.0.1"
port = {self.b.port}
protocol = "{protocol}"
client_id_prefix = "ev-bridge-out"
connections = {connections}
rate_per_connection = {rate}
burst = {burst}
username = "{B_USER}"
password_file = "{self.directory / "b-password"}"
tls = {self.tls(client_cert=False)}

[[bridge.routes]]
name = "telemetry"
source = "azure"
topic = "src/{{device_id}}/t"
destination = "aws"
destination_topic = "aws/in/{{device_id}}/t"
ack_policy = "{ack_policy}"
{routes}
"""
        )
        return path

    def tls(self, *, client_cert: bool) -> str:
        """The bridge's ``tls`` table: the test CA, and its client certificate for A."""
        crt, key = self.bridge_cert
        cert = f', cert_file = "{crt}", key_file = "{key}"' if client_cert else ""
        return f'{{ ca_file = "{self.pki.ca_cert}"{cert}, server_hostname = "localhost" }}'

    def start_bridge(self, config: Path, env: dict[str, str] | None = None) -> GatewayProcess:
        """``gateway bridge``, once its source is connected and subscribed."""
        proc = GatewayProcess(
            self.directory / "data", codecs=(), config=config, env=env, command="bridge"
        )
        if not wait_for(lambda: proc.metric("gateway_bridge_source_connected") == 1):
            proc.kill()
            raise RuntimeError("bridge did not connect:\n" + "".join(proc.raw_output))
        return proc

    def mosquitto_pub(self, topic: str, payload: bytes) -> None:
        """Publish one QoS 1 message on A with the mosquitto client (payload from stdin)."""
        crt, key = self.publisher_cert
        subprocess.run(
            [
                *("mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.a.port), "-q", "1"),
                *("-t", topic, "--cafile", str(self.pki.ca_cert), "--cert", str(crt)),
                *("--key", str(key), "-s"),
            ],
            input=payload,
            check=True,
            timeout=30,
        )


class Subscriber:
    """A persistent QoS 1 MQTT 5 session on B collecting ``(topic, payload, user properties)``;
    paho reconnects it after B restarts and B redelivers what it queued meanwhile."""

    def __init__(self, world: World, topic_filter: str, client_id: str = "aws-reader") -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._filter = topic_filter
        self._subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        client.tls_set(ca_certs=str(world.pki.ca_cert))
        client.username_pw_set(SUBSCRIBER_USER, SUBSCRIBER_PASSWORD)
        client.reconnect_delay_set(1, 2)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        properties = new_properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", world.b.port, clean_start=False, properties=properties)
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(10):
            raise RuntimeError("no SUBACK from B")

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        client.subscribe(self._filter, qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []))
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), props))

    def snapshot(self) -> list[tuple[str, bytes, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """Publishes ``count`` numbered QoS 1 messages on A at ``rate`` per second, in a thread;
    each waits for its PUBACK (paho resends it after A restarts)."""

    def __init__(self, world: World, topic: str, count: int, rate: float) -> None:
        crt, key = world.publisher_cert
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="publisher")
        client.tls_set(ca_certs=str(world.pki.ca_cert), certfile=str(crt), keyfile=str(key))
        client.reconnect_delay_set(1, 2)
        # Published while A is down, a message stays queued in paho and is sent on reconnect,
        # but its info reports "not connected" for good: the PUBACK callback is what counts.
        self._acked: set[int] = set()
        client.on_publish = lambda _c, _u, mid, _r, _p: self._acked.add(mid)
        client.connect("127.0.0.1", world.a.port)
        client.loop_start()
        self.client = client
        self.topic = topic
        self.count = count
        self.rate = rate
        self.sent = 0  # PUBACKed by A
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for seq in range(self.count):
                info = self.client.publish(self.topic, f"{seq:06d}".encode(), qos=1)
                deadline = time.monotonic() + 60
                while info.mid not in self._acked:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"message {seq} not PUBACKed by A")
                    time.sleep(0.005)
                self._acked.discard(info.mid)
                self.sent = seq + 1
                pause = started + (seq + 1) / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"
        assert self.error is None, self.error
        self.client.disconnect()
        self.client.loop_stop()
