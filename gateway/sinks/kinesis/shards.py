"""Where a partition key lands: a stream's open shards by hash-key range (ListShards)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from parser.kpl import hash_key

# Devices repeat, so each key's shard is remembered (MD5 + bisect per record otherwise); past
# this many keys the memory starts afresh.
ROUTE_CACHE_KEYS = 100_000


class ShardMap:
    """Open shards of a stream by hash-key range (ListShards), for routing and rate limiting."""

    def __init__(self, shards: Iterable[tuple[int, int, str]]) -> None:
        ordered = sorted(shards)
        self.starts = [s for s, _, _ in ordered]
        self.ends = [e for _, e, _ in ordered]
        self.ids = [i for _, _, i in ordered]

    def shard_for(self, key_hash: int) -> tuple[str, int] | None:
        """(shard id, its starting hash key) of the range holding ``key_hash``; None in a gap."""
        i = bisect.bisect_right(self.starts, key_hash) - 1
        if i < 0 or key_hash > self.ends[i]:
            return None
        return self.ids[i], self.starts[i]


class ShardRoutes:
    """A stream's shard map with the shard of every partition key already seen."""

    __slots__ = ("_known", "shard_map")

    def __init__(self, shard_map: ShardMap | None = None) -> None:
        self.shard_map = shard_map  # None before the first ListShards: records go unrouted
        self._known: dict[str, tuple[str, int] | None] = {}

    def shard_for(self, partition_key: str) -> tuple[str, int] | None:
        known = self._known
        if partition_key in known:
            return known[partition_key]
        if len(known) > ROUTE_CACHE_KEYS:
            known.clear()
        shard = self.shard_map.shard_for(hash_key(partition_key)) if self.shard_map else None
        known[partition_key] = shard
        return shard


async def list_shards(client: Any, stream_name: str) -> list[dict[str, Any]]:
    """Every shard of ``stream_name`` (open and closed), following ListShards' pages."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream_name}
    while True:
        response = await client.list_shards(**kwargs)
        shards += response["Shards"]
        if not response.get("NextToken"):
            return shards
        kwargs = {"NextToken": response["NextToken"]}


def open_shard_map(shards: list[dict[str, Any]]) -> ShardMap:
    """The map of the open shards among ``shards`` (a ListShards answer)."""
    return ShardMap(
        (int(r["StartingHashKey"]), int(r["EndingHashKey"]), shard["ShardId"])
        for shard in shards
        if "EndingSequenceNumber" not in shard["SequenceNumberRange"]  # open shards only
        for r in (shard["HashKeyRange"],)
    )
