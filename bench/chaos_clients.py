"""The outside ends of the chaos run, whose logs the checker reads: the webhook receiver (the
customer's notification service), a publisher of numbered messages on broker A that logs each
PUBACK A gives it, and a subscriber on broker B that logs each message the bridge delivered
there. Each log is JSON lines written at once, one line per event, with the wall time."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from gateway.bridge.client import new_properties
from gateway.bridge.routes import MSG_ID_PROPERTY

SNS_ACCOUNT = "123456789012"  # moto's default account
B_TOPIC = "src/{device_id}/t"  # on A; the bridge republishes it on B as aws/in/{device_id}/t
PUBLISHERS = 10  # device ids of the B route's messages: one ordered stream each


class JsonLog:
    """Appends one JSON line per event, flushed at once (the run samples it every second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"t": time.time(), **entry})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class Webhook:
    """Records every POST it answers (status and body); answers 500 while ``failing`` is set."""

    def __init__(self, log_path: Path) -> None:
        self.failing = threading.Event()
        self.log = JsonLog(log_path)
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 500 if webhook.failing.is_set() else 200
                try:
                    note = json.loads(body)
                except ValueError:
                    note = {"unreadable": body[:200].decode(errors="replace")}
                webhook.log.write({"status": status, "note": note})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # every request is in the log file

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.log.close()


def create_sns_topic(endpoint: str, name: str) -> str:
    """CreateTopic on moto (its query API: no signature checked); returns the ARN."""
    body = urllib.parse.urlencode({"Action": "CreateTopic", "Name": name, "Version": "2010-03-31"})
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        # moto tells the services apart by the credential scope.
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDCHAOSTEST/20240101/us-east-1/sns/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    request = urllib.request.Request(endpoint + "/", body.encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return f"arn:aws:sns:us-east-1:{SNS_ACCOUNT}:{name}"


class Publisher:
    """Numbered QoS 1 messages on A at ``rate`` per second over PUBLISHERS topics, logging
    ``{"seq"}`` for each PUBACK; paho reconnects after A restarts and resends what A did not
    acknowledge, and messages published meanwhile wait in paho's queue."""

    def __init__(self, port: int, rate: float, log_path: Path) -> None:
        self.log = JsonLog(log_path)
        self._seq_of: dict[int, int] = {}  # message id -> seq, until its PUBACK
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="chaos-publisher")
        client.reconnect_delay_set(1, 2)
        client.max_queued_messages_set(0)
        client.on_publish = self._on_publish
        client.connect("127.0.0.1", port)
        client.loop_start()
        self._client = client
        self._rate = rate
        self._thread = threading.Thread(target=self._run, name="chaos-publisher", daemon=True)
        self._thread.start()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, *_: object) -> None:
        with self._lock:
            seq = self._seq_of.pop(mid, None)
            if seq is None:  # PUBACKed before publish() returned: _run logs it
                self._early.add(mid)
                return
        self.log.write({"seq": seq})

    def _run(self) -> None:
        started = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            # Not under the lock: paho's network thread holds its own while it calls back.
            info = self._client.publish(
                B_TOPIC.format(device_id=f"dev{seq % PUBLISHERS}"), f"{seq:08d}", qos=1
            )
            with self._lock:
                early = info.mid in self._early
                self._early.discard(info.mid)
                if not early:
                    self._seq_of[info.mid] = seq
            if early:
                self.log.write({"seq": seq})
            seq += 1
            self._stop.wait(max(0.0, started + seq / self._rate - time.monotonic()))

    def close(self, drain_s: float) -> None:
        """Stop publishing, wait up to ``drain_s`` for the PUBACKs owed, disconnect."""
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._seq_of:
                    break
            time.sleep(0.1)
        self._client.disconnect()
        self._client.loop_stop()
        self.log.close()


class Subscriber:
    """A persistent QoS 1 MQTT 5 session on B logging ``{"seq", "id"}`` per message (``id``:
    the bridge's dedup id); paho reconnects after B restarts, and B delivers what it queued."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.log = JsonLog(log_path)
        self._subscribed = threading.Event()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="chaos-reader", protocol=paho.MQTTv5
        )
        client.reconnect_delay_set(1, 2)
        client.on_connect = lambda c, *_: c.subscribe("aws/in/#", qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        properties = new_properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(10):
            raise RuntimeError("no SUBACK from broker B")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []))
        self.log.write({"seq": int(msg.payload), "id": props.get(MSG_ID_PROPERTY)})

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.log.close()
