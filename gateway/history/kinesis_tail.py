"""``gateway kinesis tail``: read a stream, deaggregate, print one JSON line per user record.

For operators (what is the gateway writing?) and for the tests. Reads every shard from the tip
(or ``--from-start``), follows closed shards to their children, and stops on Ctrl-C, after
``--idle-exit`` seconds without records, or after ``--limit`` records.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import sys
import time
from typing import Any

import aiobotocore.session
import uvloop
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.sinks.kinesis import list_shards
from parser.errors import DecodeError
from parser.kpl import deaggregate

POLL_S = 0.2


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``kinesis`` tools (the command itself is registered by ``gateway.cli.main``)."""
    tools = p.add_subparsers(dest="kinesis_command", required=True, metavar="TOOL")
    t = tools.add_parser("tail", help="print a stream's records (deaggregated) as JSON lines")
    t.add_argument("--stream", required=True, help="stream name")
    t.add_argument("--from-start", action="store_true", help="read from the oldest record")
    t.add_argument("--region", help="AWS region (default: the AWS configuration chain)")
    t.add_argument("--endpoint-url", help="endpoint (default: AWS_ENDPOINT_URL_KINESIS or AWS)")
    t.add_argument("--idle-exit", type=float, metavar="S", help="stop after S s without records")
    t.add_argument("--limit", type=int, metavar="N", help="stop after N user records")


def run(args: argparse.Namespace) -> int:
    try:
        return uvloop.run(_tail(args))
    except (BotoCoreError, ClientError) as exc:
        print(f"gateway kinesis tail: {_describe(exc)}", file=sys.stderr)
        return 2


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"
    return str(exc)


def _line(shard: str, sequence: str, sub: int | None, key: str, data: bytes) -> bytes:
    out: dict[str, Any] = {"shard": shard, "sequence": sequence}
    if sub is not None:
        out["sub"] = sub
    out["partition_key"] = key
    try:
        out["record"] = json.loads(data)
    except ValueError:
        out["data"] = base64.b64encode(data).decode()
    return json.dumps(out).encode() + b"\n"


async def _tail(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=10)
    session = aiobotocore.session.get_session()
    out = sys.stdout.buffer
    printed = 0
    async with session.create_client(
        "kinesis", region_name=args.region, endpoint_url=args.endpoint_url, config=config
    ) as client:
        iterators: dict[str, str] = {}
        done: set[str] = set()

        async def discover() -> None:
            for shard in await list_shards(client, args.stream):
                sid = shard["ShardId"]
                if sid in iterators or sid in done:
                    continue
                parent_open = shard.get("ParentShardId") in iterators
                from_start = args.from_start or parent_open
                r = await client.get_shard_iterator(
                    StreamName=args.stream,
                    ShardId=sid,
                    ShardIteratorType="TRIM_HORIZON" if from_start else "LATEST",
                )
                iterators[sid] = r["ShardIterator"]

        await discover()
        last_record = time.monotonic()
        while not stop.is_set():
            got_any = False
            for sid, iterator in list(iterators.items()):
                response = await client.get_records(ShardIterator=iterator, Limit=1000)
                for record in response["Records"]:
                    got_any = True
                    data = record["Data"]
                    try:
                        users = deaggregate(data)
                    except DecodeError as exc:
                        print(
                            f"gateway kinesis tail: {sid} {record['SequenceNumber']}: {exc}",
                            file=sys.stderr,
                        )
                        users = None
                    seq = record["SequenceNumber"]
                    if users is None:
                        out_lines = [_line(sid, seq, None, record["PartitionKey"], data)]
                    else:
                        out_lines = [
                            _line(sid, seq, i, k, body) for i, (k, _, body) in enumerate(users)
                        ]
                    if args.limit is not None:
                        out_lines = out_lines[: args.limit - printed]
                    out.write(b"".join(out_lines))
                    printed += len(out_lines)
                    if args.limit is not None and printed >= args.limit:
                        out.flush()
                        return 0
                next_iterator = response.get("NextShardIterator")
                if next_iterator is None:  # closed by a reshard: continue in its children
                    del iterators[sid]
                    done.add(sid)
                    await discover()
                else:
                    iterators[sid] = next_iterator
            out.flush()
            if got_any:
                last_record = time.monotonic()
            elif args.idle_exit is not None and time.monotonic() - last_record > args.idle_exit:
                return 0
            if not got_any:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
    return 0
