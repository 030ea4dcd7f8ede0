"""``gateway kinesis tail``: read a stream, deaggregate, print one JSON line per user record.

For operators (what is the gateway writing?) and for the tests. Reads every shard from the tip
(or ``--from-start``), follows closed shards to their children, and stops on Ctrl-C, after
``--idle-exit`` seconds without records, or after ``--limit`` records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiobotocore.session
import uvloop
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.sinks.kinesis import list_shards
from parser.errors import DecodeError
from parser.kpl import deaggregate

POLL_S = 0.2


@dataclass(frozen=True)
class TailOptions:
    """The stream to read and where (unset: the AWS configuration chain, or
    ``AWS_ENDPOINT_URL_KINESIS``); from its oldest record or its tip; when to stop (after
    ``idle_exit_s`` without records, after ``limit`` user records; unset: on a signal only)."""

    stream: str
    from_start: bool = False
    region: str | None = None
    endpoint_url: str | None = None
    idle_exit_s: float | None = None
    limit: int | None = None


def tail(options: TailOptions) -> int:
    """Print the stream's user records as JSON lines until told to stop; the exit status."""
    try:
        return uvloop.run(_tail(options))
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


async def _tail(options: TailOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=10)
    session = aiobotocore.session.get_session()
    out = sys.stdout.buffer
    printed = 0
    async with session.create_client(
        "kinesis", region_name=options.region, endpoint_url=options.endpoint_url, config=config
    ) as client:
        iterators: dict[str, str] = {}
        done: set[str] = set()

        async def discover() -> None:
            for shard in await list_shards(client, options.stream):
                sid = shard["ShardId"]
                if sid in iterators or sid in done:
                    continue
                parent_open = shard.get("ParentShardId") in iterators
                from_start = options.from_start or parent_open
                r = await client.get_shard_iterator(
                    StreamName=options.stream,
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
                    if options.limit is not None:
                        out_lines = out_lines[: options.limit - printed]
                    out.write(b"".join(out_lines))
                    printed += len(out_lines)
                    if options.limit is not None and printed >= options.limit:
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
            elif (
                options.idle_exit_s is not None
                and time.monotonic() - last_record > options.idle_exit_s
            ):
                return 0
            if not got_any:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_S)
    return 0
