"""``gateway parse``: a long-lived consumer of the raw Kinesis stream producing parsed records.

The "parser server" of the old system, for when parsing must scale apart from connection
handling: it reads every shard of the raw stream (following closed shards to their children
after a reshard), deaggregates, re-parses each raw record exactly as live ingest and
``gateway replay`` do, writes the parsed records to the parsed stream (or a local sink), and only
then checkpoints each shard's position in a local file — so a restart resumes where it stopped
and every raw record is parsed at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiobotocore.session
import msgspec
import structlog
import uvloop
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.common.settings_base import ConfigError
from gateway.common.sink import Sink
from gateway.history.replay import Replayer, ReplayOptions, ReplaySettings
from gateway.journal.store import Journal
from gateway.sinks.kinesis import KinesisSetupError, KinesisSink, list_shards
from parser.errors import DecodeError
from parser.kpl import MAX_PARTITION_KEY_CHARS, deaggregate
from parser.records import RawRecord, to_json

log = structlog.get_logger("gateway.history.consumer")
POLL_S = 0.25
EXIT_TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: records were dead-lettered, run again


@dataclass(frozen=True)
class ConsumerOptions:
    """``checkpoint``: the position file (default ``<data_dir>/parse-checkpoint.json``);
    ``to_local``: write parsed records to a local sink there instead of the parsed stream;
    ``idle_exit_s``: stop after this long without new raw records (default: never)."""

    checkpoint: Path | None = None
    to_local: Path | None = None
    idle_exit_s: float | None = None


class Checkpoint:
    """Per shard: the last Kinesis sequence number whose user records are all written; and the
    notification rules' per-device state at that point, so rule alarms continue across a
    restart as they run live (shards are consumed one batch at a time, each batch written and
    checkpointed before the next is parsed, so the two always agree)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shards: dict[str, dict[str, Any]] = {}
        self.rule_state: dict[str, Any] | None = None
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                self.shards = saved["shards"]
                self.rule_state = saved.get("rule_state")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConfigError([f"{path}: not a checkpoint file ({exc})"]) from None

    def save(self) -> None:
        # Write-then-rename: a crash leaves the old checkpoint or the new, never half of one.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({"shards": self.shards, "rule_state": self.rule_state}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


class Consumer:
    def __init__(self, settings: ReplaySettings, options: ConsumerOptions) -> None:
        kinesis = settings.sink.kinesis
        if kinesis is None:
            raise ConfigError(["gateway parse needs a [sink.kinesis] section (the raw stream)"])
        self.options = options
        self.settings = settings
        self.stream = kinesis.raw.name
        self.checkpoint = Checkpoint(
            options.checkpoint or settings.sink.local.data_dir / "parse-checkpoint.json"
        )
        self.replayer = Replayer(settings, ReplayOptions())  # every raw record, no filters
        engine = self.replayer.engine
        saved = self.checkpoint.rule_state
        if engine is not None and saved is not None and not engine.restore(saved):
            log.warning("rules changed since the checkpoint: rule state starts idle")
        self.iterators: dict[str, str] = {}
        self.stop = asyncio.Event()
        self.dead_lettered = False
        self.raw_records = 0
        self.parsed_records = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        kinesis = self.settings.sink.kinesis
        assert kinesis is not None
        sink: Sink
        out_kinesis: KinesisSink | None = None
        if self.options.to_local is not None:
            local = Journal(
                self.settings.sink.local.model_copy(update={"data_dir": self.options.to_local}),
                "parse",
            )
            local.open()
            sink = local
        else:
            out_kinesis = KinesisSink(kinesis, self.settings.sink.local)
            try:
                await out_kinesis.open()
            except KinesisSetupError as exc:
                raise ConfigError([f"sink.kinesis: {exc}"]) from None
            sink = out_kinesis
        config = AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=10)
        session = aiobotocore.session.get_session()
        try:
            async with session.create_client(
                "kinesis",
                region_name=kinesis.region,
                endpoint_url=kinesis.endpoint_url,
                config=config,
            ) as client:
                await self._consume(client, sink)
        finally:
            if out_kinesis is not None:
                await out_kinesis.close()
            elif isinstance(sink, Journal):
                sink.close()

    async def _discover(self, client: Any) -> None:
        shards = await list_shards(client, self.stream)
        listed = {shard["ShardId"] for shard in shards}
        for shard in shards:
            sid = shard["ShardId"]
            state = self.checkpoint.shards.get(sid, {})
            if sid in self.iterators or state.get("done"):
                continue
            parents = (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
            if any(
                parent in listed and not self.checkpoint.shards.get(parent, {}).get("done")
                for parent in parents
                if parent
            ):
                # After a reshard a device's older records are in the parent: read the child
                # only once the parent is finished, or per-device order (and rules) break.
                continue
            if state.get("sequence"):
                r = await client.get_shard_iterator(
                    StreamName=self.stream,
                    ShardId=sid,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    StartingSequenceNumber=state["sequence"],
                )
            else:
                r = await client.get_shard_iterator(
                    StreamName=self.stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )
            self.iterators[sid] = r["ShardIterator"]

    async def _consume(self, client: Any, sink: Sink) -> None:
        await self._discover(client)
        last_record = time.monotonic()
        decoder = msgspec.json.Decoder(RawRecord)
        engine = self.replayer.engine
        while not self.stop.is_set():
            got_any = False
            for sid, iterator in list(self.iterators.items()):
                response = await client.get_records(ShardIterator=iterator, Limit=1000)
                records: list[bytes] = []
                keys: list[str] = []
                for record in response["Records"]:
                    got_any = True
                    try:
                        users = deaggregate(record["Data"])
                    except DecodeError as exc:
                        log.error(
                            "bad aggregate skipped",
                            shard=sid,
                            sequence=record["SequenceNumber"],
                            error=str(exc),
                        )
                        continue
                    payloads = [record["Data"]] if users is None else [u[2] for u in users]
                    for payload in payloads:
                        self.raw_records += 1
                        try:
                            raw = decoder.decode(payload)
                        except msgspec.DecodeError as exc:
                            log.error("not a raw record; skipped", shard=sid, error=str(exc))
                            continue
                        for parsed in self.replayer.parsed([raw]):
                            records.append(to_json(parsed))
                            keys.append((parsed.device_id or "unknown")[:MAX_PARTITION_KEY_CHARS])
                        # The live gateway raised these on its fast path already.
                        self.replayer.notifications.clear()
                if records:
                    lost = await sink.write("parsed", records, keys)
                    if lost:  # dead-lettered by the sink: stop here, re-read them after a restart
                        log.error("parsed records dead-lettered; not checkpointing", shard=sid)
                        self.dead_lettered = True
                        self.stop.set()
                        break
                    self.parsed_records += len(records)
                state = self.checkpoint.shards.setdefault(sid, {})
                if response["Records"]:
                    state["sequence"] = response["Records"][-1]["SequenceNumber"]
                next_iterator = response.get("NextShardIterator")
                if next_iterator is None:  # closed by a reshard: its children continue
                    state["done"] = True
                if response["Records"] or next_iterator is None:
                    if engine is not None:
                        self.checkpoint.rule_state = engine.snapshot()
                    self.checkpoint.save()  # only after the parsed records are written
                if next_iterator is None:
                    del self.iterators[sid]
                    await self._discover(client)
                else:
                    self.iterators[sid] = next_iterator
            if got_any:
                last_record = time.monotonic()
            elif (
                self.options.idle_exit_s is not None
                and time.monotonic() - last_record > self.options.idle_exit_s
            ):
                return
            if not got_any:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), POLL_S)


def consume(settings: ReplaySettings, options: ConsumerOptions) -> int:
    """Consume until stopped (or idle), then print a summary line; returns the exit status."""
    consumer = Consumer(settings, options)
    started = time.monotonic()
    try:
        uvloop.run(consumer.run())
    except (BotoCoreError, ClientError) as exc:
        print(f"gateway parse: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "raw_records": consumer.raw_records,
                "parsed_records": consumer.parsed_records,
                "seconds": round(seconds, 3),
                "dead_lettered": consumer.dead_lettered,
            }
        )
    )
    # Non-zero so that a supervisor (Restart=on-failure) restarts it: the restart reads the
    # dead-lettered records again from the checkpoint.
    return EXIT_TEMPFAIL if consumer.dead_lettered else 0
