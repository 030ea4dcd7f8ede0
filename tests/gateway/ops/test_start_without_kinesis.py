"""``gateway run`` starts while Kinesis does not answer (a restart or a deploy during an AWS
outage): the journal takes the devices' data and the shippers send it once Kinesis is back. What
no wait would fix — a stream that does not exist — still stops the start, in one line."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.gateway.gatewayproc import GATEWAY, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy
from tests.gateway.sinks.kinesis.harness import (
    AWS_ENV,
    acked_count,
    assert_acked_frames_in_both_streams,
    finish,
    simulate,
    start_gateway,
    write_config,
)


def test_the_gateway_starts_and_acks_while_kinesis_is_unreachable(
    tmp_path: Path,
    kinesalite: Kinesalite,
    make_stream: Callable[[int], str],
    fault_proxy: FaultProxy,
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    fault_proxy.update(refuse_connections=True)
    started = time.monotonic()
    gw = start_gateway(tmp_path, fault_proxy.url, raw_stream, parsed_stream)
    try:
        assert gw.events("Kinesis does not answer; journaling, shipping once it does")
        assert time.monotonic() - started < 30  # not held for request timeouts
        sim = simulate(gw, tmp_path, 30, 6.0)
        assert wait_for(lambda: acked_count(tmp_path) > 0 or sim.poll() is not None, 30)
        fault_proxy.update(refuse_connections=False)
        summary = finish(sim)
        assert summary["acked"] > 0 and summary["unacked"] == 0
        assert_acked_frames_in_both_streams(
            tmp_path, kinesalite, raw_stream, parsed_stream, timeout=60
        )
    finally:
        assert gw.stop() == 0


def test_a_stream_that_does_not_exist_stops_the_start_in_one_line(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    config = write_config(tmp_path, kinesalite.endpoint, "no-such-stream", make_stream(1))
    done = subprocess.run(
        [GATEWAY, "run", "--config", str(config), "--data-dir", str(tmp_path / "data"),
         "--metrics", "127.0.0.1:0", "--health", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**AWS_ENV, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "ResourceNotFoundException" in done.stderr, done.stderr
