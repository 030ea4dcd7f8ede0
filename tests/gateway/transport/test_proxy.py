"""PROXY headers are believed only from the load balancer: real sockets through the real gateway.

Loopback stands in for the VPC: the "NLB" connects from 127.0.0.1 (the trusted network), a
direct client from 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings
from parser.proxy_protocol import build_v2
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, read_records, wait_for
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
NLB = "127.0.0.1"
DIRECT = "127.0.0.2"
CLOSED = "gateway_connections_closed_by_gateway_total"


def listener_config(tmp_path: Path, mode: str) -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        f"[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\nproxy_protocol = '{mode}'\n"
        f"proxy_protocol_trusted_networks = ['{NLB}/32']\nallowed_networks = ['10.0.0.0/8']\n"
    )
    return config


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_a_proxy_header_from_a_peer_that_is_not_the_load_balancer_is_refused(
    tmp_path: Path, mode: str
) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=listener_config(tmp_path, mode))
    try:
        port = gw.ports["evb1"]
        header = build_v2(("10.1.2.3", 40000), ("10.0.0.5", port))
        # Through the NLB: the header is believed and the allow-list checks the device's address.
        device = DeviceSocket(port, source=NLB)
        device.send(header + evb1_login(IMEI) + evb1_heartbeat(1))
        assert device.recv_exact(22) == evb1_ack(0, 1) + evb1_ack(1, 4)
        # A direct client forging the same header (it would pass the allow-list of 10.0.0.0/8).
        forger = DeviceSocket(port, source=DIRECT)
        forger.send(header + evb1_login("356307042441099") + evb1_heartbeat(2))
        assert forger.closed_by_peer()
        assert gw.metric(CLOSED, reason="proxy_untrusted") == 1
        # The same direct client without a header: under 'required' it may not connect at all;
        # under 'optional' it is a direct connection, its own address checked (and refused).
        bare = DeviceSocket(port, source=DIRECT)
        bare.send(evb1_login("356307042441099"))
        assert bare.closed_by_peer()
        refusal = "proxy_untrusted" if mode == "required" else "source_not_allowed"
        assert wait_for(lambda: gw.metric(CLOSED, reason=refusal) >= 1)
        device.close()
    finally:
        assert gw.stop() == 0
    raw = read_records(gw.data_dir, "raw")
    assert {(r["device_id"], r["peer"]) for r in raw} == {(IMEI, "10.1.2.3:40000")}


def test_proxy_protocol_without_trusted_networks_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text("[[listeners]]\ncodec = 'evb1'\nport = 0\nproxy_protocol = 'optional'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems == [
        "listeners.0: proxy_protocol = 'optional' needs proxy_protocol_trusted_networks (the "
        "load balancer's subnets): a PROXY header from any other peer could claim any address"
    ]
    run = subprocess.run(
        [GATEWAY, "run", "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert "proxy_protocol_trusted_networks" in run.stderr + run.stdout
    assert "Traceback" not in run.stderr + run.stdout
