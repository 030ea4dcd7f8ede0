"""A stub Kinesis endpoint for the benches: every PutRecords succeeds, after ``--delay-ms``.

Run: ``python bench/kinesis_stub.py [--delay-ms 100] [--shards 4] [--hold-while-exists FILE]``;
prints its port. ``--hold-while-exists``: PutRecords answers wait while FILE exists (a bench
starts a gateway on a backlog and times the drain from the file's removal). ListShards
(and any other call) gets ``--shards`` open shards splitting the hash-key space evenly. The
answers are all the sink reads, so the benches measure the gateway, not an emulator; the delay
stands in for the service's round trip (bench/journal.py's ``delivered`` row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

HASH_SPACE = 2**128


def shards(count: int) -> list[dict[str, object]]:
    step = HASH_SPACE // count
    return [
        {
            "ShardId": f"shardId-{i:012d}",
            "HashKeyRange": {
                "StartingHashKey": str(i * step),
                "EndingHashKey": str(HASH_SPACE - 1 if i == count - 1 else (i + 1) * step - 1),
            },
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        }
        for i in range(count)
    ]


async def serve(delay_s: float, shard_count: int, hold: Path | None) -> None:
    listing = json.dumps({"Shards": shards(shard_count)}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, target = 0, b""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"x-amz-target":
                        target = value.strip()
                body = await reader.readexactly(length)
                if target.endswith(b"PutRecords"):
                    while hold is not None and hold.exists():
                        await asyncio.sleep(0.01)
                    if delay_s:
                        await asyncio.sleep(delay_s)
                    entry = {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
                    count = body.count(b'"PartitionKey"')
                    out = json.dumps({"FailedRecordCount": 0, "Records": [entry] * count}).encode()
                else:
                    out = listing
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    b"Content-Length: " + str(len(out)).encode() + b"\r\n\r\n" + out
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def start_stub(
    cpu: int, delay_s: float = 0.0, shard_count: int = 4, hold_while_exists: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The stub running on ``cpu``, and its endpoint URL; the caller kills it."""
    hold = [] if hold_while_exists is None else ["--hold-while-exists", str(hold_while_exists)]
    stub = subprocess.Popen(
        [
            "taskset", "-c", str(cpu), sys.executable, str(Path(__file__)),
            "--delay-ms", str(delay_s * 1000), "--shards", str(shard_count), *hold,
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert stub.stdout is not None
    return stub, f"http://127.0.0.1:{int(stub.stdout.readline())}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0, help="before each PutRecords answer")
    ap.add_argument("--shards", type=int, default=4, help="open shards ListShards reports")
    ap.add_argument("--hold-while-exists", type=Path, metavar="FILE")
    args = ap.parse_args()
    asyncio.run(serve(args.delay_ms / 1000, args.shards, args.hold_while_exists))


if __name__ == "__main__":
    main()
