"""The real pieces of the chaos run, on loopback and free ports: kinesalite behind the fault
proxy, moto (SNS), mosquitto broker A with the bridge's source session, the webhook receiver,
``gateway run`` (under ``fiu-run -x``, its data directory on a tmpfs of its own) and the
simulated fleets; each started here is stopped by :meth:`System.close`, whatever happened.

The gateway listens on ports fixed for the whole run, so the fleets (started once) find it again
after every restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chaos_clients import B_TOPIC, Publisher, SnsTopic, Subscriber, Webhook

from tests.gateway.gatewayproc import GatewayProcess
from tests.gateway.sinks.kinesis.emulator import Kinesalite, missing_tools
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.local_server import free_port
from tests.mqtt_broker import BrokerListener, MosquittoBroker
from tests.s3server import MOTO_SERVER, MotoS3

TCP_CODECS = ("teltonika", "gt06", "evb1", "ais140")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDCHAOSTEST",
    "AWS_SECRET_ACCESS_KEY": "chaos-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/chaos-aws-config",
}
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"
# Broker A keeps the bridge's backlog while the gateway is down (mosquitto's default drops QoS 1
# messages past 1,000 queued per client).
BROKER_A_EXTRA = "max_queued_messages 0\nmax_inflight_messages 0"
BRIDGE_TOPIC = "ev/{device_id}/telemetry"  # what `gateway simulate --transport mqtt` publishes
RESTART_EVERY_S = 2.0
FIU_RUN = shutil.which("fiu-run")
FIU_CTRL = shutil.which("fiu-ctrl")
# Where the broken builds live (bench/chaos_break/sitecustomize.py), put on the gateway's
# PYTHONPATH only by ``--break``.
BREAK_DIR = Path(__file__).resolve().parent / "chaos_break"
# `gateway simulate`, its ACKs logged at once.
FLEET = Path(__file__).resolve().parent / "chaos_fleet.py"
B_RATE_HZ = 20.0  # messages per second published on A for the bridge's route to B
IMEI_BASE = 356307040000000


@dataclass(frozen=True, slots=True)
class Load:
    """The offered load: a fixed modest rate (2 shared cores), not a fraction of a peak."""

    tcp_devices: int
    mqtt_devices: int
    bridge_devices: int
    rate_hz: float
    faults_per_min: float
    idle_connections: int


@dataclass
class Fleet:
    """One ``gateway simulate``: ``source`` is who ACKs it (tcp, mqtt: the gateway; bridge:
    broker A, which the bridge empties into the gateway)."""

    source: str
    acked_log: Path
    proc: subprocess.Popen[bytes]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class GatewayExit:
    t: float
    status: int
    expected: bool


class System:
    def __init__(
        self,
        work: Path,
        load: Load,
        seed: int,
        *,
        tmpfs_bytes: int,
        broken: str | None,
        log: Callable[[str], None],
    ) -> None:
        self.work = work
        self.load = load
        self.seed = seed
        self.tmpfs_bytes = tmpfs_bytes
        self.broken = broken
        self.log = log
        self.disk = work / "disk"
        self.data_dir = self.disk / "data"
        self.fiu_fifo = work / "fiu"
        self.raw_stream = "chaos-raw"
        self.parsed_stream = "chaos-parsed"
        self.exits: list[GatewayExit] = []
        self.fleets: list[Fleet] = []
        self._mounted = False
        self._closers: list[Callable[[], object]] = []
        self.gateway: GatewayProcess | None = None
        self.kinesalite: Kinesalite | None = None
        self.proxy: FaultProxy | None = None
        self.broker_a: MosquittoBroker | None = None
        self.broker_b: MosquittoBroker | None = None
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.webhook: Webhook | None = None
        self.sns: SnsTopic | None = None  # None: moto is not installed
        self._moto: MotoS3 | None = None
        self._expecting_exit = False
        self._down = True
        self._last_attempt = 0.0
        self.ports = {codec: free_port() for codec in (*TCP_CODECS, "mqtt")}
        self.started, self.wall_started = time.monotonic(), time.time()
        self.gateway_log: IO[str] = (work / "gateway.log").open("a", encoding="utf-8")
        self._closers.append(self.gateway_log.close)

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Everything but the fleets, in dependency order; raises RuntimeError naming what is
        missing on this machine."""
        problems = [p for p in (missing_tools(), self._missing_system_tools()) if p]
        if problems:
            raise RuntimeError("; ".join(problems))
        self._mount()
        self.kinesalite = Kinesalite()
        self._closers.append(self._stop_kinesalite)
        for stream in (self.raw_stream, self.parsed_stream):
            self.kinesalite.create_stream(stream, 2)
        self.proxy = FaultProxy(self.kinesalite.endpoint, seed=self.seed)
        self.proxy.start()
        self._closers.append(self.proxy.stop)
        if MOTO_SERVER.exists():
            self._moto = MotoS3()
            self._closers.append(self._moto.stop)
            self.sns = SnsTopic(self._moto.endpoint, "chaos-faults")
        self.webhook = Webhook(self.work / "webhook.jsonl")
        self._closers.append(self.webhook.close)
        self.broker_a = MosquittoBroker(
            self.work / "broker-a", [BrokerListener()], None, BROKER_A_EXTRA
        )
        self.broker_a.start()
        self._closers.append(self.broker_a.kill)
        self.broker_b = MosquittoBroker(self.work / "broker-b", [BrokerListener()])
        self.broker_b.start()
        self._closers.append(self.broker_b.kill)
        self.subscriber = Subscriber(self.broker_b.port, self.work / "b-received.jsonl")
        self._closers.append(self.subscriber.close)
        self.config = self.work / "gateway.toml"
        self.config.write_text(self._config())
        self._closers.append(self._stop_gateway)
        if not self.start_gateway():
            raise RuntimeError("the gateway did not start (gateway.log says why)")

    def start_publisher(self) -> None:
        """Numbered messages on A for the bridge's route to B, PUBACKs logged."""
        assert self.broker_a is not None
        self.publisher = Publisher(self.broker_a.port, B_RATE_HZ, self.work / "a-acked.jsonl")
        self._closers.append(lambda: self.publisher.close(drain_s=0) if self.publisher else None)

    @staticmethod
    def _missing_system_tools() -> str | None:
        if FIU_RUN is None or FIU_CTRL is None:
            return "fiu-run/fiu-ctrl not installed (Debian fiu-utils: make setup)"
        if os.geteuid() != 0:
            return "the chaos run mounts a tmpfs for the journal: run it as root"
        return None

    def _mount(self) -> None:
        self.disk.mkdir(parents=True)
        size = f"size={self.tmpfs_bytes}"
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(self.disk)],
            check=True,
            capture_output=True,
            timeout=10,
        )
        self._mounted = True

    def _config(self) -> str:
        assert self.proxy is not None and self.webhook is not None
        assert self.broker_a is not None and self.broker_b is not None
        listeners = "".join(
            f"[[listeners]]\ncodec = '{c}'\nhost = '127.0.0.1'\nport = {self.ports[c]}\n"
            for c in TCP_CODECS
        )
        sns = (
            f"[notifications.targets.sns]\ntopic_arn = '{self.sns.arn}'\n"
            f"region = 'us-east-1'\nendpoint_url = '{self._moto.endpoint}'\n"
            if self.sns is not None and self._moto is not None
            else ""
        )
        return f"""shutdown_timeout_s = 10.0
{listeners}
[[mqtt_listeners]]
host = '127.0.0.1'
port = {self.ports["mqtt"]}

[journal]
# The tmpfs holds the whole run (the checker reads every segment), so nothing is retained
# away; a little free space is kept so that a full disk pauses readers before writes fail.
min_free_bytes = 4194304

[sink.kinesis]
raw = {{ name = '{self.raw_stream}' }}
parsed = {{ name = '{self.parsed_stream}' }}
endpoint_url = '{self.proxy.url}'
retry_first_s = 0.05
retry_max_s = 1.0

[notifications]
reminder_s = 60.0

[notifications.retry]
# A webhook answering 500 for a while is retried, never given up on within the run.
max_attempts = 1000
max_s = 2.0
ttl_s = 7200.0

[notifications.targets.webhook]
url = '{self.webhook.url}'
secret = '{WEBHOOK_SECRET}'
{sns}
[bridge]
name = 'chaos-bridge'
backoff_base_s = 0.2
backoff_cap_s = 2.0

[[bridge.sources]]
name = 'broker-a'
host = '127.0.0.1'
port = {self.broker_a.port}
protocol = '5'
client_id = 'chaos-bridge-1'
subscriptions = [{{ filter = 'ev/+/telemetry', qos = 1 }}, {{ filter = 'src/#', qos = 1 }}]

[[bridge.destinations]]
name = 'broker-b'
host = '127.0.0.1'
port = {self.broker_b.port}
protocol = '5'
client_id_prefix = 'chaos-bridge-out'
rate_per_connection = 1000.0
publish_timeout_s = 5.0

[[bridge.routes]]
name = 'frames'
source = 'broker-a'
topic = '{BRIDGE_TOPIC}'
destination = 'pipeline'
codec = 'evb1'

[[bridge.routes]]
name = 'to-b'
source = 'broker-a'
topic = '{B_TOPIC}'
destination = 'broker-b'
destination_topic = 'aws/in/{{device_id}}/t'
"""

    def gateway_env(self) -> dict[str, str]:
        env = dict(AWS_ENV)
        if self.broken is not None:
            path = os.environ.get("PYTHONPATH")
            env["PYTHONPATH"] = str(BREAK_DIR) + (os.pathsep + path if path else "")
            env["CHAOS_BREAK"] = self.broken
        return env

    def start_gateway(self) -> bool:
        """One start of ``gateway run``; whether it got ready. A start that fails is logged
        and counted as an exit the schedule did not cause; :meth:`check_gateway` tries again."""
        assert FIU_RUN is not None
        self._down = True
        self._last_attempt = time.monotonic()
        try:
            gateway = GatewayProcess(
                self.data_dir,
                codecs=(),
                config=self.config,
                env=self.gateway_env(),
                launcher=(FIU_RUN, "-x", "-f", str(self.fiu_fifo)),
            )
        except RuntimeError as exc:
            self.gateway_log.write(f"{exc}\n")
            self.exits.append(GatewayExit(self.clock(), -1, expected=False))
            self.log("gateway did not start: " + str(exc).strip().splitlines()[-1][:300])
            return False
        self.gateway = gateway
        self._down = False
        self._expecting_exit = False
        self.log(f"gateway started, pid {gateway.proc.pid}")
        return True

    def start_fleets(self) -> None:
        """The TCP fleet on every codec, EVB1 units on the MQTT listener and on broker A (for
        the bridge), each with device faults, logging every ACK; they run until stopped."""
        assert self.broker_a is not None
        load, ports = self.load, self.ports
        tcp = [a for c in TCP_CODECS for a in ("--target", f"{c}=127.0.0.1:{ports[c]}")]
        mqtt = ["--transport", "mqtt", "--target"]
        runs = [
            ("tcp", ",".join(TCP_CODECS), tcp, load.tcp_devices),
            ("mqtt", "evb1", [*mqtt, f"127.0.0.1:{ports['mqtt']}"], load.mqtt_devices),
            ("bridge", "evb1", [*mqtt, f"127.0.0.1:{self.broker_a.port}"], load.bridge_devices),
        ]
        for index, (source, codecs, targets, devices) in enumerate(runs):
            acked = self.work / f"acked-{source}.jsonl"
            options = {
                "--codec": codecs,
                "--devices": devices,
                "--rate": load.rate_hz,
                "--duration": 0,  # until stopped
                "--faults": load.faults_per_min,
                "--seed": self.seed + index,
                "--imei-base": IMEI_BASE + index * 1_000_000,  # distinct device ids per fleet
                "--drain": 20,
                "--acked-log": acked,
            }
            args = [str(x) for option in options.items() for x in option]
            with (self.work / f"simulate-{source}.err").open("ab") as err:
                proc = subprocess.Popen(
                    [sys.executable, str(FLEET), *args, *targets],
                    stdout=subprocess.PIPE,
                    stderr=err,
                )
            self.fleets.append(Fleet(source, acked, proc))
        self.start_publisher()

    # --- during the run ---------------------------------------------------------------------

    def clock(self) -> float:
        """Seconds since the run began (the schedule's time)."""
        return time.monotonic() - self.started

    def gateway_pid(self) -> int | None:
        gw = self.gateway
        return None if self._down or gw is None or gw.proc.poll() is not None else gw.proc.pid

    def check_gateway(self, t: float) -> None:
        """Notice an exit the schedule did not cause, and start the gateway again (as systemd
        would) while it is meant to run, at most every RESTART_EVERY_S."""
        gw = self.gateway
        if self._expecting_exit:
            return
        if not self._down and gw is not None and gw.proc.poll() is not None:
            self.exits.append(GatewayExit(t, gw.proc.returncode, expected=False))
            self.log(f"gateway exited unexpectedly with status {gw.proc.returncode}")
            self._drain_output(gw)
            self._down = True
        if self._down and time.monotonic() - self._last_attempt >= RESTART_EVERY_S:
            self.start_gateway()

    def restart_gateway(self) -> None:
        """The end of a kill fault: the gateway is meant to run again from now on."""
        self._expecting_exit = False
        self.start_gateway()

    def kill_gateway(self, t: float, sig: signal.Signals) -> int | None:
        """Signal the gateway and wait for its exit; returns its status (None: it was down)."""
        gw = self.gateway
        self._expecting_exit = True
        if self._down or gw is None or gw.proc.poll() is not None:
            self._down = True
            return None
        if sig == signal.SIGTERM:
            status = gw.stop(timeout=60)
        else:
            gw.proc.send_signal(sig)
            status = gw.proc.wait(30)
        self._down = True
        self.exits.append(GatewayExit(t, status, expected=True))
        self._drain_output(gw)
        return status

    def fiu(self, command: str) -> None:
        """A fiu-ctrl command to the running gateway (a no-op while it is down: a restarted
        gateway starts with no failure point enabled)."""
        pid = self.gateway_pid()
        if pid is None or FIU_CTRL is None:
            return
        result = subprocess.run(
            [FIU_CTRL, "-f", str(self.fiu_fifo), "-c", command, str(pid)],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if result.returncode != 0:
            self.log(f"fiu-ctrl {command!r}: status {result.returncode} {result.stderr.strip()}")

    def flush_gateway_log(self) -> None:
        """Move what the running gateway logged so far to gateway.log: a long run would keep
        every line (and its parsed form) in memory."""
        gw = self.gateway
        if gw is not None:
            count = len(gw.raw_output)
            self.gateway_log.writelines(gw.raw_output[:count])
            del gw.raw_output[:count]
            gw.lines.clear()  # nothing here reads them: the checker reads the stores

    def _drain_output(self, gw: GatewayProcess) -> None:
        gw._reader.join(5)
        self.gateway_log.writelines(gw.raw_output)
        self.gateway_log.flush()
        gw.raw_output.clear()

    # --- the end ----------------------------------------------------------------------------

    def stop_fleets(self) -> None:
        """SIGTERM every fleet: each waits for its outstanding ACKs, writes its log and summary."""
        for fleet in self.fleets:
            if fleet.proc.poll() is None:
                fleet.proc.send_signal(signal.SIGTERM)
        if self.publisher is not None:
            self.publisher.close(drain_s=20)
        for fleet in self.fleets:
            try:
                out, _ = fleet.proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                fleet.proc.kill()
                out, _ = fleet.proc.communicate(timeout=10)
            lines = out.decode(errors="replace").strip().splitlines()
            with contextlib.suppress(IndexError, ValueError):
                fleet.summary = json.loads(lines[-1])

    def close(self) -> None:
        """Stop everything started, newest first; never raises."""
        for fleet in self.fleets:
            if fleet.proc.poll() is None:
                fleet.proc.kill()
                fleet.proc.wait(10)
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # one stuck piece must not keep the others running
                self.log(f"cleanup: {closer!r}: {exc!r}")
        if self._mounted:
            subprocess.run(
                ["umount", "-l", str(self.disk)], capture_output=True, timeout=10, check=False
            )
            self._mounted = False

    def _stop_kinesalite(self) -> None:
        if self.kinesalite is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.kinesalite.proc.pid, signal.SIGCONT)
            self.kinesalite.stop()

    def _stop_gateway(self) -> None:
        gw = self.gateway
        if gw is not None and gw.proc.poll() is None:
            self._expecting_exit = True
            gw.kill()
        if gw is not None:
            self._drain_output(gw)
