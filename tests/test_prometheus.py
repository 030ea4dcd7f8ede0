"""config/prometheus against real servers: promtool on the gateway's exposition, the rules and
the scrape config; the rules unit-tested with ``promtool test rules``; a real Prometheus scraping a
real gateway on loopback, loading the rules and running the dashboard's queries.

Every metric name in the rules and the dashboard must be one a real gateway exposes (with the
local sink, and with the Kinesis sink on kinesalite), one of Prometheus' or the blackbox
exporter's, or one of FUTURE.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.workers import RESTARTS_ENV, WORKER_ENV
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, wait_for
from tests.gateway.sinks.kinesis import emulator
from tests.gateway.sinks.kinesis.emulator import Kinesalite, unique_stream_name
from tests.parser.streams import evb1_ack, evb1_frame, evb1_heartbeat, evb1_login
from tests.prometheus_server import PrometheusServer, missing_tools, promtool

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "prometheus"
ALERTS = CONFIG / "alerts.yml"
DASHBOARD = CONFIG / "grafana-dashboard.json"
IMEI = "356307042441013"
JOB = "ev-gateway"  # the job name prometheus.yml and the rules use
# Read by the rules or the dashboard before the gateway exposes them.
FUTURE: set[str] = set()
EXTERNAL = {"up", "probe_success"}  # Prometheus' own, and the blackbox exporter's
SCRAPE_WAIT_S = 15.0  # Prometheus applies new targets every 5 s, then scrapes every 1 s
# Grafana's variables as the live test substitutes them.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "job": JOB, "instance": ".*"}
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    """prometheus and promtool are installed by `make setup`: missing, the tests fail (CI)."""
    problem = missing_tools()
    if problem:
        pytest.fail(problem, pytrace=False)


# --- helpers --------------------------------------------------------------------------------------


def drive_evb1(port: int, heartbeats: int, *, faults: bool = False) -> None:
    """One device logs in and sends ``heartbeats`` frames, each waiting for its ACK; with
    ``faults``, also a frame of an unknown type (a decode error) and garbage (a reject)."""
    dev = DeviceSocket(port)
    try:
        dev.send(evb1_login(IMEI))
        assert dev.recv_exact(11) == evb1_ack(0, 1)
        for seq in range(1, heartbeats + 1):
            dev.send(evb1_heartbeat(seq))
            assert dev.recv_exact(11) == evb1_ack(seq, 4)
        if faults:
            dev.send(evb1_frame(0x63, 900, b"\x01\x02"))
            assert dev.recv_exact(11) == evb1_ack(900, 0x63)
            dev.send(b"\x00garbage\xff")
    finally:
        dev.close()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
    return text


def exposed_names(exposition: str) -> set[str]:
    """Every series name the exposition can produce, including families without samples yet
    (a labelled counter appears once its first label value is seen)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers left once strings, label
    matchers, ranges and grouping clauses are cut, that are neither functions nor keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.findall(r"(?<![\w.$])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()", expr)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def grafana_expr(expr: str) -> str:
    """A dashboard query with its Grafana variables replaced, for Prometheus to run."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARIABLES[m[1]], expr)


def alert_names() -> list[str]:
    return re.findall(r"^ {6}- alert: (\w+)$", ALERTS.read_text(), re.MULTILINE)


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["type"] != "row"]


def without_annotations(rules: str) -> str:
    """The rules with their annotations cut: ``promtool test rules`` compares annotations
    verbatim, and the unit tests below are about when each alert fires and with which labels."""
    kept: list[str] = []
    depth = None
    for line in rules.splitlines():
        indent = len(line) - len(line.lstrip())
        if depth is not None and (not line.strip() or indent > depth):
            continue
        depth = indent if line.strip() == "annotations:" else None
        if depth is None:
            kept.append(line)
    return "\n".join(kept) + "\n"


def with_ec2_discovery(config: str) -> str:
    """prometheus.yml with its commented EC2 job in place of the static one."""
    lines = config.splitlines()
    ec2_start = lines.index(f"  # - job_name: {JOB}")
    ec2_end = ec2_start
    while ec2_end < len(lines) and lines[ec2_end].startswith("  # "):
        ec2_end += 1
    static_start = lines.index(f"  - job_name: {JOB}")
    static_end = static_start + 1
    while not lines[static_end] or lines[static_end].startswith("    "):
        static_end += 1
    ec2 = [line.replace("  # ", "  ", 1) for line in lines[ec2_start:ec2_end]]
    kept = lines[:static_start] + lines[static_end:ec2_start] + ec2 + lines[ec2_end:]
    return "\n".join(kept) + "\n"


def assert_promtool_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    """Exit status 0 and nothing but its "Checking …" and "SUCCESS: …" lines."""
    output = result.stdout + result.stderr
    problems = [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith("Checking ") and "SUCCESS:" not in line
    ]
    assert result.returncode == 0 and not problems, f"promtool:\n{output}"


# --- the gateway's exposition ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a gateway on the local sink that saw frames, a decode error and a reject."""
    gw = GatewayProcess(tmp_path_factory.mktemp("local") / "data")
    try:
        drive_evb1(gw.ports["evb1"], heartbeats=3, faults=True)
        assert wait_for(lambda: gw.metric("gateway_rejects_total") >= 1)
        text = scrape(gw.metrics_url)
        assert gw.stop() == 0
    finally:
        gw.kill()
    return text


@pytest.fixture(scope="module")
def kinesis_exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a gateway on the Kinesis sink (kinesalite) that delivered a few frames, run
    as a worker."""
    problem = emulator.missing_tools()
    if problem:
        pytest.fail(problem, pytrace=False)
    tmp = tmp_path_factory.mktemp("kinesis")
    kinesalite = Kinesalite()
    try:
        raw, parsed = unique_stream_name("prom-raw"), unique_stream_name("prom-parsed")
        kinesalite.create_stream(raw, 1)
        kinesalite.create_stream(parsed, 1)
        config = tmp / "gateway.toml"
        config.write_text(
            "[sink.kinesis]\nlinger_ms = 20\n"
            f"raw = {{ name = '{raw}' }}\nparsed = {{ name = '{parsed}' }}\n"
            f"endpoint_url = '{kinesalite.endpoint}'\n"
        )
        env = {
            "AWS_ACCESS_KEY_ID": "AKIDLOCALTEST",
            "AWS_SECRET_ACCESS_KEY": "local-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            # As worker 0 of `run --workers N` (its supervisor's variable), restarted once:
            # it exposes the worker metrics too.
            WORKER_ENV: "0",
            RESTARTS_ENV: "1",
        }
        gw = GatewayProcess(tmp / "data", codecs=("evb1",), config=config, env=env)
        try:
            drive_evb1(gw.ports["evb1"], heartbeats=3)  # delivered: ACKed once in Kinesis
            text = scrape(gw.metrics_url)
            assert gw.stop() == 0
        finally:
            gw.kill()
    finally:
        kinesalite.stop()
    return text


@pytest.fixture(scope="module")
def known_names(local_exposition: str, kinesis_exposition: str) -> set[str]:
    return exposed_names(local_exposition) | exposed_names(kinesis_exposition) | FUTURE | EXTERNAL


@pytest.mark.parametrize("sink", ["local", "kinesis"])
def test_the_exposition_passes_promtool_check_metrics(
    sink: str, request: pytest.FixtureRequest
) -> None:
    exposition: str = request.getfixturevalue(f"{sink}_exposition")
    # The labelled families have samples, so their names and label sets are linted too.
    wanted: tuple[str, ...] = ("gateway_frames_total{", "gateway_ack_latency_seconds_bucket{")
    if sink == "local":
        wanted += ("gateway_decode_errors_total{", "gateway_rejects_total{")
        wanted += ("gateway_journal_bytes{", "gateway_journal_full ")
    else:
        wanted += ("gateway_kinesis_user_records_total{", "gateway_kinesis_put_records_seconds_")
        wanted += ("gateway_shipper_lag_bytes{", "gateway_worker_restarts_total{")
    assert all(name in exposition for name in wanted), exposition
    result = promtool("check", "metrics", stdin=exposition)
    # promtool prints nothing on success and one line per lint problem otherwise.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"promtool check metrics:\n{output}"


# --- the files, checked and unit-tested by promtool -----------------------------------------------


def test_the_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert_promtool_succeeded(result)
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


@pytest.mark.parametrize("discovery", ["static", "ec2"])
def test_the_scrape_config_passes_promtool_check_config(tmp_path: Path, discovery: str) -> None:
    config = (CONFIG / "prometheus.yml").read_text()
    if discovery == "ec2":
        config = with_ec2_discovery(config)
        assert f"  - job_name: {JOB}\n    ec2_sd_configs:\n" in config
        assert config.count(f"job_name: {JOB}\n") == 1
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(ALERTS, tmp_path / "alerts.yml")  # rule_files are relative to the config
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert_promtool_succeeded(result)
    assert "SUCCESS: 1 rule files found" in result.stdout


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    """An input series (of job ev-gateway unless ``job`` says otherwise), in promtool's
    expanding notation."""
    matchers = ", ".join(f'{k}="{v}"' for k, v in ({"job": JOB} | labels).items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


W0, W1 = {"instance": "10.0.1.10:9108"}, {"instance": "10.0.1.10:9109"}


def fires(at: str, alert: str, *alerts: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": a} for a in alerts]}


def test_the_rules_fire_when_they_should(tmp_path: Path) -> None:
    """Each alert on made-up series: firing after its ``for:``, with the labels it keeps, and
    silent on a healthy worker or codec next to it."""
    w0_labels = {"job": JOB, **W0}
    buckets = "gateway_ack_latency_seconds_bucket"
    notify = "gateway_notification_delivery_seconds_bucket"
    evb1, gt06 = {"codec": "evb1", "transport": "tcp"}, {"codec": "gt06", "transport": "tcp"}
    readyz = {"job": "ev-gateway-readyz", "instance": "http://10.0.1.10:8080/readyz"}
    raw, parsed = {"stream": "raw", **W0}, {"stream": "parsed", **W0}
    kinesis = "gateway_kinesis_"
    journal, shipper, to_kinesis = "gateway_journal_", "gateway_shipper_", {"target": "kinesis"}
    inputs = [
        series("up", "1 1 0 0 0 0 0", **W0),
        series("up", "1x6", **W1),
        series("probe_success", "1 0 0 0 0 0", **readyz),
        series("gateway_sink_errors_total", "0x5 1+3x15", **raw),
        series("gateway_sink_errors_total", "0x20", **parsed),
        # raw: 80 % of the calls fail; parsed: 10 %.
        series(f"{kinesis}put_records_calls_total", "0+10x20", **raw),
        series(f"{kinesis}request_errors_total", "0+8x20", code="ExpiredTokenException", **raw),
        series(f"{kinesis}put_records_calls_total", "0+10x20", **parsed),
        series(f"{kinesis}request_errors_total", "0+1x20", code="LimitExceededException", **parsed),
        # raw: 9 % of the entries fail; parsed: 1 %.
        series(f"{kinesis}records_total", "0+100x30", **raw),
        series(f"{kinesis}failed_entries_total", "0+10x30", code="InternalFailure", **raw),
        series(f"{kinesis}records_total", "0+100x30", **parsed),
        series(f"{kinesis}failed_entries_total", "0+1x30", code="InternalFailure", **parsed),
        series("gateway_paused_seconds_total", "0+45x20", **W0),  # paused 75 % of the time
        series("gateway_paused_seconds_total", "0+15x20", **W1),  # 25 %
        # evb1: 2 % of the frames do not decode; gt06: 0.5 %.
        series("gateway_frames_total", "0+1000x30", **evb1, **W0),
        series("gateway_decode_errors_total", "0+20x30", reason="unknown_type", **evb1, **W0),
        series("gateway_frames_total", "0+1000x30", **gt06, **W0),
        series("gateway_decode_errors_total", "0+5x30", reason="bad_length", **gt06, **W0),
        # evb1 ACKs all between 2.5 s and 5 s; gt06's under 100 ms.
        series(buckets, "0x20", le="2.5", **evb1, **W0),
        series(buckets, "0+100x20", le="5.0", **evb1, **W0),
        series(buckets, "0+100x20", le="+Inf", **evb1, **W0),
        series(buckets, "0+100x20", le="0.1", **gt06, **W0),
        series(buckets, "0+100x20", le="+Inf", **gt06, **W0),
        series(notify, "0x20", le="10.0", **W0),
        series(notify, "0+10x20", le="30.0", **W0),
        series(notify, "0+10x20", le="+Inf", **W0),
        # raw's oldest unshipped record ages a minute a minute; parsed ships.
        series(f"{shipper}oldest_unshipped_seconds", "0+60x20", **raw, **to_kinesis),
        series(f"{shipper}oldest_unshipped_seconds", "0x20", **parsed, **to_kinesis),
        # W0's unshipped bytes grow past 80 % of its budget at 9m; W1 stays at a fifth.
        series(f"{journal}budget_used_bytes", "0+100x20", **W0),
        series(f"{journal}max_bytes", "1000x20", **W0),
        series(f"{journal}budget_used_bytes", "0+10x20", **W1),
        series(f"{journal}max_bytes", "1000x20", **W1),
        series(f"{journal}full", "0 0 1x5 0x10", **W0),
        series(f"{journal}full", "0x20", **W1),
        series(f"{shipper}dead_letters_total", "0x5 3x20", **parsed, **to_kinesis),
        series(f"{shipper}dead_letters_total", "0x25", **raw, **to_kinesis),
        series("gateway_worker_restarts_total", "0x5 1x20", worker="0", **W0),
        series("gateway_worker_restarts_total", "0x25", worker="1", **W1),
    ]
    critical, warning = {"severity": "critical"}, {"severity": "warning"}
    checks = [
        fires("3m", "GatewayDown"),  # down for 1 minute: pending
        fires("5m", "GatewayDown", {**critical, **w0_labels}),
        fires("4m", "GatewayNotReady", {**warning, **readyz}),
        fires("4m", "GatewaySinkFailing"),
        fires("15m", "GatewaySinkFailing", {**critical, **w0_labels, "stream": "raw"}),
        fires("10m", "GatewayKinesisFailing", {**critical, **w0_labels, "stream": "raw"}),
        fires("25m", "GatewayKinesisEntriesFailing", {**warning, **w0_labels, "stream": "raw"}),
        fires("10m", "GatewayBackpressureSustained", {**warning, **w0_labels}),
        fires("25m", "GatewayDecodeErrorRatio", {**warning, "codec": "evb1"}),
        fires("15m", "GatewayAckLatencyHigh", {**warning, **w0_labels, "codec": "evb1"}),
        fires("10m", "GatewayNotificationDeliveryLag", {**critical, **w0_labels}),
        fires("8m", "GatewayShipperLagging"),  # over 5 minutes old, for 2 minutes: pending
        fires(
            "12m",
            "GatewayShipperLagging",
            {**warning, **w0_labels, "stream": "raw", "target": "kinesis"},
        ),
        fires("12m", "GatewayJournalFilling"),  # over 80 % since 9m: pending
        fires("15m", "GatewayJournalFilling", {**warning, **w0_labels}),
        fires("2m", "GatewayJournalFull"),
        fires("4m", "GatewayJournalFull", {**critical, **w0_labels}),
        fires("10m", "GatewayJournalFull"),  # room again
        fires(
            "10m",
            "GatewayShipperDeadLetters",
            {**warning, **w0_labels, "stream": "parsed", "target": "kinesis"},
        ),
        fires("20m", "GatewayShipperDeadLetters"),
        fires("8m", "GatewayWorkerRestarts", {**warning, **w0_labels, "worker": "0"}),
        fires("25m", "GatewayWorkerRestarts"),  # none for 15 minutes: resolved
    ]
    (tmp_path / "alerts.yml").write_text(without_annotations(ALERTS.read_text()))
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}],
    }
    (tmp_path / "alerts.test.yml").write_text(json.dumps(tests, indent=2))  # JSON is YAML
    tested = {check["alertname"] for check in checks}
    assert tested == set(alert_names())
    result = promtool("test", "rules", str(tmp_path / "alerts.test.yml"))
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"


# --- the dashboard --------------------------------------------------------------------------------


def test_the_dashboard_reads_metrics_the_gateway_exposes(known_names: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 39
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]
    for panel in dashboard_panels():
        title = panel["title"]
        assert panel["datasource"] == datasource, title
        assert panel["targets"], title
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), title
        for target in panel["targets"]:
            assert target["datasource"] == datasource, title
            names = metric_names(target["expr"])
            assert names, f"{title}: no metric in {target['expr']}"
            assert names <= known_names, f"{title}: unknown {names - known_names}"
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == datasource, variable["name"]
        metric = re.fullmatch(r"label_values\((\w+)(?:\{.*\})?, *\w+\)", variable["definition"])
        assert metric is not None and metric[1] in known_names, variable["definition"]


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{le!="1e3",x=~"$x"}'
        "[$__rate_interval] offset 5m))) / on (job) group_left (codec) b_total > bool 1e3"
        ' or up{job="x"} == 0 unless sum without (reason) (c) and absent(d)'
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "up", "c", "d"}


# --- a real Prometheus scraping a real gateway ---------------------------------------------------


@dataclass
class Live:
    gateway: GatewayProcess
    target: str  # the gateway's metrics address, as Prometheus labels it (instance)
    prometheus: PrometheusServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A gateway (EVB1 on the local sink) and a Prometheus scraping it every second with the
    rules of alerts.yml."""
    tmp = tmp_path_factory.mktemp("live")
    gw = GatewayProcess(tmp / "data", codecs=("evb1",))
    try:
        target = urllib.parse.urlsplit(gw.metrics_url).netloc
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        prometheus = PrometheusServer(config, tmp / "prometheus")
        try:
            yield Live(gw, target, prometheus)
        finally:
            prometheus.stop()
        assert gw.stop() == 0
    finally:
        gw.kill()


def test_prometheus_scrapes_the_frames_the_gateway_received(live: Live) -> None:
    sent = 7
    drive_evb1(live.gateway.ports["evb1"], heartbeats=sent)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while time.monotonic() < deadline:
        seen = live.prometheus.query("gateway_frames_total")
        if sum(float(s["value"][1]) for s in seen) == sent:
            break
        time.sleep(0.2)
    assert sum(float(s["value"][1]) for s in seen) == sent, (
        f"gateway_frames_total in Prometheus: {seen}\n{live.prometheus.output()}"
    )
    labels = {"codec": "evb1", "transport": "tcp", "job": JOB, "instance": live.target}
    assert [s["metric"] for s in seen] == [{"__name__": "gateway_frames_total", **labels}]
    up = live.prometheus.query(f'up{{job="{JOB}"}}')
    assert [s["value"][1] for s in up] == ["1"]


def test_prometheus_loads_and_evaluates_the_rules(live: Live, known_names: set[str]) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = live.prometheus.api("rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    assert wait_for(
        lambda: all(rule["health"] != "unknown" for rule in rules()), timeout=SCRAPE_WAIT_S
    ), rules()
    loaded = rules()
    assert sorted(rule["name"] for rule in loaded) == sorted(alert_names())
    for rule in loaded:
        name = rule["name"]
        assert rule["type"] == "alerting", name
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert rule["duration"] > 0, f"{name} has no for:"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        names = metric_names(rule["query"])
        assert names, f"{name}: no metric in {rule['query']}"
        assert names <= known_names, f"{name}: unknown {names - known_names}"
    # A healthy gateway, scraped for seconds, raises nothing.
    assert [a for a in live.prometheus.api("alerts")["alerts"] if a["state"] == "firing"] == []


def test_prometheus_runs_the_dashboard_queries(live: Live) -> None:
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = grafana_expr(target["expr"])
            try:
                live.prometheus.query(expr)
            except RuntimeError as exc:
                pytest.fail(f"{panel['title']}: {exc}")
