"""Batched produce on top of aiokafka's batch API.

`AIOKafkaProducer.send()` costs tens of microseconds per record; building record batches per
partition and sending them whole is an order of magnitude cheaper, which is what keeps produce
from being the bottleneck. Partitioning matches the Java client (murmur2 of the key), so keyed
outputs land where any other Kafka client would put them; keyless records spread round-robin.
"""
from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial
from itertools import islice, repeat, takewhile
from operator import is_not, itemgetter
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from streams.config import Config
from streams.kafka.fastpath import produce_request

_KEY_CACHE_LIMIT = 100_000
_NO_HEADERS: list = []  # aiokafka wants a list; it only reads it
_appended = partial(is_not, None)  # a batch's append returns None once the batch is full
_COLUMNS = (itemgetter(0), itemgetter(1), itemgetter(2))  # key, value, headers of a record
# One partition's records in a send: (partition, their indexes in the call's lists, keys, values, headers)
_Run = tuple[int, Sequence[int], list, list, Iterable[Any]]


def _public_append(batch, offset, timestamp, key, value, headers):
    return batch.append(key=key, value=value, timestamp=timestamp, headers=headers)


def make_producer(config: Config) -> AIOKafkaProducer:
    k, p = config.kafka, config.producer
    producer = AIOKafkaProducer(
        **k.client_options(),
        linger_ms=p.linger_ms,
        max_batch_size=p.max_batch_bytes,
        max_request_size=p.max_request_size,
        compression_type=None if p.compression == "none" else p.compression,
        acks="all" if p.acks == "all" else int(p.acks),
        enable_idempotence=p.enable_idempotence,
        request_timeout_ms=p.request_timeout_ms,
    )
    produce_request.install(producer)
    return producer


class BatchProducer:
    """Produces lists of (key, value, headers) to a topic, one record batch per partition at a time."""

    def __init__(self, producer: AIOKafkaProducer):
        self.producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._round_robin: dict[str, itertools.cycle] = {}
        # per topic: key -> partition, and None -> this call's partition for keyless records
        self._key_partition: dict[str, dict[bytes | None, int]] = {}
        self._key_hash: dict[bytes, int] = {}

    async def partitions(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            found = await self.producer.partitions_for(topic)
            if not found:
                raise LookupError(f"topic {topic!r} has no partitions (does it exist?)")
            parts = self._partitions[topic] = sorted(found)
            self._round_robin[topic] = itertools.cycle(parts)
        return parts

    def _partition_for(self, cache: dict[bytes | None, int], parts: list[int], key: bytes) -> int:
        hashes = self._key_hash  # a key's hash is the same for every topic: fan-out hashes it once
        h = hashes.get(key)
        if h is None:
            if len(hashes) >= _KEY_CACHE_LIMIT:
                hashes.clear()
            h = hashes[key] = murmur2(key) & 0x7FFFFFFF
        part = parts[h % len(parts)]
        if len(cache) >= _KEY_CACHE_LIMIT:
            cache.clear()
        cache[key] = part
        return part

    async def send(self, topic: str, records, partition: int | None = None
                   ) -> tuple[list[tuple[asyncio.Future, list[int]]], list[int]]:
        """Queue records (any iterable of (key, value, headers), read once); returns (future,
        indexes of `records` in that batch) per sent batch, and the indexes of records too large
        for any batch (for the caller to dead-letter).
        `partition`: put every record there instead of partitioning by key.

        Each future resolves when the broker acknowledged its batch, or raises its error.
        """
        rows = records if type(records) is list else list(records)
        if not rows:
            return [], []
        keys, values, headers = (list(map(column, rows)) for column in _COLUMNS)
        return await self.send_columns(topic, keys, values, headers if any(headers) else None, partition)

    async def send_columns(self, topic: str, keys: list, values: list, headers: list | None = None,
                           partition: int | None = None
                           ) -> tuple[list[tuple[asyncio.Future, list[int]]], list[int]]:
        """`send` for records given as lists of keys, values and (optionally) headers, as the
        kafka target has them. Records are grouped by partition first, and each partition's run
        is appended by `map` over the batch builder's append: no Python step per record, which
        is most of what a record would cost. Per-partition order is the order given."""
        parts = await self.partitions(topic)
        where: list[int | None]
        if partition is not None:
            where = [partition] * len(values)
        else:
            # murmur2 in Python is slow and keys repeat: partitions are cached per key
            cache = self._key_partition.setdefault(topic, {})
            cache[None] = next(self._round_robin[topic])  # keyless records: one partition per call
            where = list(map(cache.get, keys))
        count = Counter(where)
        if None in count:  # keys not seen yet
            for i in [i for i, part in enumerate(where) if part is None]:
                where[i] = self._partition_for(cache, parts, keys[i])
            count = Counter(where)
        # no None is left: keyless records have the round-robin partition, new keys theirs
        part_of, per_part = cast("list[int]", where), cast("Counter[int]", count)
        # aiokafka's batch builder takes headers as a list; consumed records carry them as tuples
        all_headers: Iterable[Any] = repeat(_NO_HEADERS) if headers is None else [
            h if type(h) is list else list(h) if h else _NO_HEADERS for h in headers]
        runs: list[_Run]
        if len(per_part) <= 1:
            runs = [(part_of[0], range(len(values)), keys, values, all_headers)] if values else []
        else:
            order = sorted(range(len(values)), key=part_of.__getitem__)  # stable: order kept per partition
            runs, start = [], 0
            for part in sorted(per_part):
                indexes = order[start:start + per_part[part]]
                start += per_part[part]
                runs.append((part, indexes, list(map(keys.__getitem__, indexes)),
                             list(map(values.__getitem__, indexes)),
                             list(map(all_headers.__getitem__, indexes)) if type(all_headers) is list
                             else all_headers))
        sent, too_large = [], []
        for part, positions, run_keys, run_values, run_headers in runs:
            done = 0
            while done < len(positions):
                current = self._new_batch()
                appended = len(list(takewhile(_appended, map(
                    current[1], itertools.count(), repeat(None), islice(run_keys, done, None),
                    islice(run_values, done, None), islice(run_headers, done, None)))))
                if not appended:  # alone in a new batch and still too big
                    too_large.append(positions[done])
                    done += 1
                    continue
                current[2].extend(positions[done:done + appended])
                done += appended
                sent.append(await self._ship(current, topic, part))
        return sent, too_large

    def _new_batch(self) -> tuple:
        """(batch, append, []) for a new batch. `append` is the record batch builder's own (C)
        method, called with positional arguments: aiokafka's `BatchBuilder.append` wraps it in a
        Python call with keywords per record, to count offsets and run serializers, which this
        producer does not have (it sends bytes), and that wrapper costs as much as the append."""
        batch = self.producer.create_batch()
        builder = getattr(batch, "_builder", None)
        if builder is None or batch._key_serializer or batch._value_serializer:  # not the aiokafka we know
            return batch, partial(_public_append, batch), []
        return batch, builder.append, []

    async def send_to_partition(self, topic: str, partition: int, records: list) -> list[tuple[asyncio.Future, list[int]]]:
        """Queue (key, value, headers) records to one given partition (a changelog follows its
        source partition); returns (future, indexes) per batch, like `send`."""
        sent, too_large = await self.send(topic, records, partition=partition)
        if too_large:
            raise ValueError(f"a record for {topic}[{partition}] exceeds producer.max_batch_bytes")
        return sent

    async def _ship(self, current: tuple, topic: str, part: int) -> tuple[asyncio.Future, list[int]]:
        batch, append, indexes = current
        if type(append) is not partial:
            batch._relative_offset = len(indexes)  # what BatchBuilder.append would have counted
        batch.close()
        return await self.producer.send_batch(batch, topic, partition=part), indexes
