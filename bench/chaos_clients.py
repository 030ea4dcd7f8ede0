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
from xml.etree import ElementTree

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


class SnsTopic:
    """An SNS topic on moto with an SQS queue subscribed (raw delivery): what the gateway
    published there is read back from the queue. moto's query APIs check no signature; the
    credential scope in the header tells it the service."""

    def __init__(self, endpoint: str, name: str) -> None:
        self._endpoint = endpoint
        self.arn = f"arn:aws:sns:us-east-1:{SNS_ACCOUNT}:{name}"
        self._call("sns", Action="CreateTopic", Name=name)
        answer = self._call("sqs", Action="CreateQueue", QueueName=name)
        self._queue_url = _xml_texts(answer, "QueueUrl")[0]
        self._call(
            "sns",
            Action="Subscribe",
            TopicArn=self.arn,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:us-east-1:{SNS_ACCOUNT}:{name}",
            **{"Attributes.entry.1.key": "RawMessageDelivery", "Attributes.entry.1.value": "true"},
        )
        self.received: list[dict[str, Any]] = []

    def _call(self, service: str, **params: str) -> bytes:
        version = "2010-03-31" if service == "sns" else "2012-11-05"
        body = urllib.parse.urlencode({**params, "Version": version}).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIDCHAOSTEST/20240101/us-east-1/"
            f"{service}/aws4_request, SignedHeaders=host, Signature=0",
        }
        request = urllib.request.Request(self._endpoint + "/", body, headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: bytes = response.read()
            return answer

    def drain(self) -> list[dict[str, Any]]:
        """Every notification published so far (read from the queue and deleted there)."""
        while True:
            answer = self._call(
                "sqs", Action="ReceiveMessage", QueueUrl=self._queue_url, MaxNumberOfMessages="10"
            )
            bodies = _xml_texts(answer, "Body")
            if not bodies:
                return self.received
            self.received += [json.loads(body) for body in bodies]
            for handle in _xml_texts(answer, "ReceiptHandle"):
                self._call("sqs", Action="DeleteMessage", QueueUrl=self._queue_url,
                           ReceiptHandle=handle)  # fmt: skip


def _xml_texts(document: bytes, tag: str) -> list[str]:
    """The text of every element named ``tag`` (any namespace)."""
    root = ElementTree.fromstring(document)
    return [e.text or "" for e in root.iter() if e.tag.rpartition("}")[2] == tag]


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
