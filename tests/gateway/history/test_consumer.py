"""``gateway parse`` against kinesalite: stopped mid-stream, it resumes from its checkpoint."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from parser.records import RAW_SCHEMA, RawRecord, iso_ms, to_json
from tests.gateway.gatewayproc import GATEWAY, read_records, wait_for
from tests.gateway.sinks.kinesis.emulator import Kinesalite
from tests.gateway.sinks.kinesis.harness import AWS_ENV, simulate, start_gateway, user_records
from tests.parser.streams import evb1_heartbeat


def test_parse_resumes_from_its_checkpoint(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    raw_stream, parsed_stream = make_stream(2), make_stream(2)
    gw = start_gateway(tmp_path, kinesalite.endpoint, raw_stream, parsed_stream)
    config = tmp_path / "kinesis.toml"  # the gateway's own settings name both streams
    out, checkpoint = tmp_path / "parsed-out", tmp_path / "checkpoint.json"
    parse_args = [
        GATEWAY,
        "parse",
        "--config",
        str(config),
        "--to-local",
        str(out),
        "--checkpoint",
        str(checkpoint),
    ]
    env = {**os.environ, **AWS_ENV}
    try:
        sim = simulate(gw, tmp_path, 90, 8.0)
        time.sleep(2.0)
        first = subprocess.Popen(parse_args, env=env, stdout=subprocess.PIPE)
        assert wait_for(lambda: len(read_records(out, "parsed")) > 50, timeout=20)
        time.sleep(1.0)
        first.send_signal(signal.SIGTERM)  # mid-stream: the fleet is still sending
        first_out, _ = first.communicate(timeout=30)
        assert first.returncode == 0
        assert json.loads(checkpoint.read_text())["shards"]
        sim.communicate(timeout=90)
    finally:
        assert gw.stop() == 0
    second = subprocess.run(
        [*parse_args, "--idle-exit", "2"], env=env, capture_output=True, timeout=120, check=True
    )
    summary_1 = json.loads(first_out.decode().splitlines()[-1])
    summary_2 = json.loads(second.stdout.decode().splitlines()[-1])
    raw = user_records(kinesalite, raw_stream)
    # The restart resumed: together the two runs read each raw record about once, not twice.
    assert summary_1["raw_records"] > 0 and summary_2["raw_records"] > 0
    assert summary_1["raw_records"] + summary_2["raw_records"] < 1.2 * len(raw)
    # Every raw record was parsed at least once, exactly like the live parsed stream.
    live = {r["record"]["id"]: r["record"] for r in user_records(kinesalite, parsed_stream)}
    parsed = {r["id"]: r for r in read_records(out, "parsed")}
    assert parsed.keys() == live.keys()
    differ = [(parsed[i], live[i]) for i in live if parsed[i] != live[i]]
    assert not differ, [
        (i, {k: (a[k], b[k]) for k in a if a[k] != b[k]}) for i, (a, b) in enumerate(differ[:3])
    ]


def test_after_a_split_the_children_are_read_once_the_parent_is_done(
    tmp_path: Path, kinesalite: Kinesalite, make_stream: Callable[[int], str]
) -> None:
    raw_stream, parsed_stream = make_stream(1), make_stream(1)
    device = "356307042441013"

    def put(first: int, count: int) -> None:
        for start in range(first, first + count, 500):
            entries = []
            for i in range(start, min(start + 500, first + count)):
                ms = 1_767_225_600_000 + i * 1000
                raw = RawRecord(
                    RAW_SCHEMA, f"{i:08d}", device, "evb1", "tcp", None, iso_ms(ms),
                    evb1_heartbeat(i % 65_000, ms // 1000),
                )  # fmt: skip
                data = base64.b64encode(to_json(raw)).decode()
                entries.append({"Data": data, "PartitionKey": device})
            kinesalite.call("PutRecords", {"StreamName": raw_stream, "Records": entries})

    put(0, 1500)  # more than one GetRecords call (1,000) in the parent
    [shard] = kinesalite.list_shards(raw_stream)
    keys = shard["HashKeyRange"]
    middle = (int(keys["StartingHashKey"]) + int(keys["EndingHashKey"])) // 2
    split = {"ShardToSplit": shard["ShardId"], "NewStartingHashKey": str(middle)}
    kinesalite.call("SplitShard", {"StreamName": raw_stream, **split})
    assert wait_for(
        lambda: (
            kinesalite.call("DescribeStream", {"StreamName": raw_stream})["StreamDescription"][
                "StreamStatus"
            ]
            == "ACTIVE"
        )
    )
    put(1500, 20)  # the device's newest records, in a child shard
    config = tmp_path / "parse.toml"
    config.write_text(
        f"[sink.kinesis]\nraw = {{ name = '{raw_stream}' }}\n"
        f"parsed = {{ name = '{parsed_stream}' }}\nendpoint_url = '{kinesalite.endpoint}'\n"
        f"[sink.local]\ndata_dir = '{tmp_path / 'data'}'\n"
    )
    out = tmp_path / "out"
    subprocess.run(
        [GATEWAY, "parse", "--config", str(config), "--to-local", str(out),
         "--checkpoint", str(tmp_path / "checkpoint.json"), "--idle-exit", "2"],
        env={**os.environ, **AWS_ENV}, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    raw_ids = [r["raw_id"] for r in read_records(out, "parsed")]
    assert len(raw_ids) == 1520
    assert raw_ids == sorted(raw_ids)  # the device's order (ids count up), across the reshard
