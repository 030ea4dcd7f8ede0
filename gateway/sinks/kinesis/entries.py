"""A batch of user records as Kinesis entries: KPL aggregates grouped by shard, or one each.

Aggregates are grouped by the shard their partition keys hash to, and each is sent with an
``ExplicitHashKey`` inside that shard, so that its user records land where their keys say.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sinks.kinesis.shards import ShardRoutes
from parser.kpl import AggregateBuilder


@dataclass(slots=True)
class Entry:
    """One Kinesis record of a PutRecords call and the batch's user records it carries."""

    data: bytes
    partition_key: str
    explicit_hash_key: str | None
    shard: str | None  # where we expect it to land
    indexes: list[int]  # the batch's user records it carries
    size: int = 0
    attempts: int = 0  # PutRecords calls that carried it

    def __post_init__(self) -> None:
        self.size = len(self.data) + len(self.partition_key.encode())


def build_entries(
    records: list[bytes],
    keys: list[str],
    routes: ShardRoutes,
    *,
    aggregate: bool,
    aggregate_max_bytes: int,
) -> list[Entry]:
    """The entries carrying ``records`` (``keys``: their partition keys), in order per shard."""
    if not aggregate:
        entries = []
        for i, (record, key) in enumerate(zip(records, keys, strict=True)):
            shard = routes.shard_for(key)
            entries.append(Entry(record, key, None, shard and shard[0], [i]))
        return entries
    by_shard: dict[tuple[str, int] | None, list[int]] = {}
    for i, key in enumerate(keys):
        shard = routes.shard_for(key)
        if shard in by_shard:
            by_shard[shard].append(i)
        else:
            by_shard[shard] = [i]
    entries = []
    for shard, indexes in by_shard.items():
        # The EHK in the aggregate's table routes every user record with it: a consumer that
        # checks each record's hash against the shard it landed on (the KCL) accepts them
        # even if our shard map was stale.
        ehk = None if shard is None else str(shard[1])
        builder = AggregateBuilder(ehk)
        members: list[int] = []
        groups = [(builder, members)]
        # size_with is exact but costs; it is only needed near the limit. A record adds at
        # most its data, 4 bytes per key character and a few bytes of framing: ``room`` is
        # what is surely left, counted down by that bound and made exact only when it is
        # about to run out (the builder's size is a property call: not once per record).
        room = aggregate_max_bytes - builder.size
        for i in indexes:
            key, data = keys[i], records[i]
            bound = len(data) + 4 * len(key) + 32
            if bound > room:
                room = aggregate_max_bytes - builder.size
                if (
                    bound > room
                    and len(builder)
                    and builder.size_with(key, data) > aggregate_max_bytes
                ):
                    builder, members = AggregateBuilder(ehk), []
                    groups.append((builder, members))
                    room = aggregate_max_bytes - builder.size
            builder.add(key, data)
            members.append(i)
            room -= bound
        entries += [
            Entry(b.build(), b.first_partition_key, ehk, shard and shard[0], carried)
            for b, carried in groups
            if len(b)
        ]
    return entries
