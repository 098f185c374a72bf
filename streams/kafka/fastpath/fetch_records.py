"""Fetched records decoded a record batch at a time instead of one generator step at a time.

aiokafka hands `getmany()` its records through five Python calls per record: FetchResult.getall
pulls PartitionRecords.__next__, which resumes the `_unpack_records` generator, which calls
`_consumer_record`, which builds the ConsumerRecord. One list comprehension per batch builds the
same ConsumerRecords for about half the cost (figures: tests/bench/results/NOTES.md);
tests/unit/streams/kafka/test_fetch_records.py checks they are the same, with the same positions.

Batches are also checked against their CRC-32C with the CPU's CRC instruction (google-crc32c),
several times cheaper than aiokafka's software CRC. For that the fetched bytes are kept beside
aiokafka's MemoryRecords (`RawMemoryRecords`).

`install()` swaps aiokafka's FetchResult, PartitionRecords and MemoryRecords (module globals of
aiokafka.consumer.fetcher, so it is process-wide) for classes that take this path when a
partition's fetch has no deserializers and no aborted transactions, which is how every
eventweir consumer reads. Otherwise they run aiokafka's own code. It first checks that this
aiokafka has the shape the subclasses expect and that both paths read a sample fetch alike;
if not it leaves aiokafka as it is (a newer aiokafka loses the speed, not correctness).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

from streams.kafka import fastpath

log = logging.getLogger(__name__)

_installed: bool | None = None
_shipped: tuple | None = None  # aiokafka's own (PartitionRecords, FetchResult, MemoryRecords), once replaced


def _hardware_crc32c():
    """google-crc32c's CRC-32C when it runs as compiled code (the CPU's CRC instruction), else None."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return google_crc32c.value if google_crc32c.implementation == "c" else None


class RawMemoryRecords:
    """aiokafka's MemoryRecords over a fetch's bytes, with the bytes kept (`data`) for the CRC
    check; its methods are the C object's own, so it costs nothing per call."""

    __slots__ = ("data", "has_next", "next_batch", "size_in_bytes")

    def __init__(self, data: bytes):
        from aiokafka.record.memory_records import MemoryRecords

        records = MemoryRecords(data)
        self.data = data
        self.has_next, self.next_batch, self.size_in_bytes = records.has_next, records.next_batch, records.size_in_bytes


def _classes():
    from aiokafka.consumer import fetcher
    from aiokafka.errors import CorruptRecordException
    from aiokafka.structs import ConsumerRecord

    base_records, base_result = _shipped[:2] if _shipped else (fetcher.PartitionRecords, fetcher.FetchResult)
    crc32c = _hardware_crc32c()

    class BatchPartitionRecords(base_records):
        """PartitionRecords whose records can be taken a batch at a time (`take`)."""

        def __init__(self, tp, records, aborted_transactions, fetch_offset, key_deserializer,
                     value_deserializer, check_crcs, isolation_level):
            super().__init__(tp, records, aborted_transactions, fetch_offset, key_deserializer,
                             value_deserializer, check_crcs, isolation_level)
            # aborted transactions need aiokafka's per-batch bookkeeping; deserializers its calls
            self._by_batch = not self._aborted_transactions and key_deserializer is None \
                and value_deserializer is None
            if self._by_batch:
                # aiokafka's record generator, which this path never runs, holds `self` in its
                # frame: a reference cycle that kept every fetch's bytes (megabytes) and its last
                # decoded batch alive until a cyclic GC pass, which the worker's GC threshold
                # makes rare (streams.runtime.worker.tune_gc): 600-750 MB resident over 1M events
                self._records_iterator.close()
                self._records_iterator = None
            self._pending: list = []  # decoded records of the current batch not yet taken
            self._taken = 0
            self._pending_end = None  # the offset after the current batch
            # the fetch's bytes and where the next batch starts in them, for the CRC check
            self._data = getattr(records, "data", None) if crc32c is not None else None
            self._at = 0

        def __next__(self):
            if not self._by_batch:
                return super().__next__()
            records, _ = self.take(1)
            if records:
                return records[0]
            raise StopIteration

        def take(self, limit: int | None) -> tuple[list, bool]:
            """Up to `limit` records (all when None), and whether none are left."""
            if not self._by_batch:
                return self._take_one_by_one(limit)
            out: list = []
            while limit is None or len(out) < limit:
                pending, taken = self._pending, self._taken
                if taken < len(pending):
                    n = len(pending) - taken if limit is None else min(len(pending) - taken, limit - len(out))
                    out += pending[taken:taken + n] if n != len(pending) else pending
                    self._taken = taken + n
                    self.next_fetch_offset = out[-1].offset + 1
                    continue
                if self._pending_end is not None:
                    # as aiokafka: the position moves past a batch only once its last record is
                    # taken and another is asked for (past what compaction removed at its end)
                    self.next_fetch_offset = self._pending_end
                    self._pending_end = None
                if not self._records.has_next():
                    return out, True
                self._decode(self._records.next_batch())
            return out, False

        def _decode(self, batch) -> None:
            if self._check_crcs and not self._crc_holds(batch):
                raise CorruptRecordException(f"Invalid CRC - {self._tp}")
            self._pending, self._taken = [], 0
            self._pending_end = batch.next_offset
            if batch.is_control_batch:  # transaction markers: skipped at any isolation level
                return
            topic, partition, start = self._tp.topic, self._tp.partition, self.next_fetch_offset
            self._pending = [
                ConsumerRecord(topic, partition, r.offset, r.timestamp, r.timestamp_type, k, v, r.checksum,
                               -1 if k is None else len(k), -1 if v is None else len(v), tuple(r.headers))
                for r in batch for k in [r.key] for v in [r.value]
            ]
            if self._pending and self._pending[0].offset < start:
                # a batch fetched from its middle, or a legacy compressed message set
                self._pending = [r for r in self._pending if r.offset >= start]

        def _crc_holds(self, batch) -> bool:
            data, at = self._data, self._at
            if data is None:
                return batch.validate_crc()
            # every batch and old message starts with its offset (8 bytes) and the size of the rest (4)
            end = at + 12 + int.from_bytes(data[at + 8:at + 12], "big")
            self._at = end
            if data[at + 16] != 2:  # an old message set: aiokafka's check
                return batch.validate_crc()
            # v2: the CRC at bytes 17-20 covers everything from the attributes (byte 21) on
            return crc32c(data[at + 21:end]) == batch.crc

        def _take_one_by_one(self, limit) -> tuple[list, bool]:
            out: list = []
            step = super().__next__
            try:
                while limit is None or len(out) < limit:
                    out.append(step())
            except StopIteration:
                return out, True
            return out, False

    class BatchFetchResult(base_result):
        def getall(self, max_records=None):
            records = self._partition_records
            if not isinstance(records, BatchPartitionRecords):
                return super().getall(max_records)
            if not self.check_assignment(self._topic_partition) or not self.has_more():
                return []
            out, exhausted = records.take(max_records)
            self._update_position()
            if exhausted:
                self._partition_records = None
            return out

    return fetcher, BatchPartitionRecords, BatchFetchResult


def install() -> bool:
    """Make aiokafka consumers in this process read fetched records a batch at a time, if this
    aiokafka reads a sample fetch alike both ways. Returns whether it is installed."""
    global _installed, _shipped
    if not fastpath.enabled():
        return False
    if _installed is None:
        _installed = False
        try:
            fetcher, records_class, result_class = _classes()
            if reads_alike(fetcher.PartitionRecords, records_class):
                _shipped = fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords
                fetcher.PartitionRecords, fetcher.FetchResult = records_class, result_class
                fetcher.MemoryRecords = RawMemoryRecords
                _installed = True
            else:
                log.warning("aiokafka reads fetches differently than streams.kafka.fastpath.fetch_records expects: "
                            "records are read one by one")
        except Exception:  # noqa: BLE001 - an aiokafka without these internals keeps its own path
            log.warning("aiokafka's fetcher is not the one streams.kafka.fastpath.fetch_records expects: "
                        "records are read one by one", exc_info=True)
    return _installed


@contextmanager
def as_shipped():
    """aiokafka's own fetch path for consumers started and stopped inside the block. The
    benchmarks' floor is aiokafka as shipped; no consumer started outside may fetch meanwhile."""
    if not _shipped:
        yield
        return
    from aiokafka.consumer import fetcher

    ours = fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords
    fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords = _shipped
    try:
        yield
    finally:
        fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords = ours


def sample_fetch() -> bytes:
    """Three record batches as a broker returns them: keys, null values and headers."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    data = b""
    offset = 0
    for size in (3, 1, 4):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
        for i in range(size):
            builder.append(i, timestamp=1000 + offset + i, key=None if i % 2 else b"k%d" % i,
                           value=None if i == 2 else b"v" * i, headers=[("h", b"x")] if i == 1 else [])
        batch = bytearray(builder.build())
        batch[0:8] = offset.to_bytes(8, "big")  # base offset, outside the batch CRC
        data += bytes(batch)
        offset += size
    return data


def reads_alike(original, batched) -> bool:
    """Whether both PartitionRecords classes read `sample_fetch()` to the same records and
    positions, from each fetch offset and with each record limit, and `batched` refuses it
    with one bit changed."""
    from aiokafka.errors import CorruptRecordException
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.structs import TopicPartition

    data = sample_fetch()
    tp = TopicPartition("sample", 0)
    for start in range(8):
        for limit in (1, 2, 3, None):
            theirs = original(tp, MemoryRecords(data), [], start, None, None, True, 0)
            ours = batched(tp, RawMemoryRecords(data), [], start, None, None, True, 0)
            while True:
                expected, done = [], False
                for record in theirs:
                    expected.append(record)
                    if limit is not None and len(expected) >= limit:
                        break
                else:
                    done = True
                got, exhausted = ours.take(limit)
                if got != expected or ours.next_fetch_offset != theirs.next_fetch_offset:
                    return False
                if done:
                    if not exhausted and ours.take(None)[0]:
                        return False
                    break
    corrupt = bytearray(data)
    corrupt[data.rindex(b"vvv")] ^= 1  # a value's byte in the last batch: still parses, fails the CRC
    try:
        batched(tp, RawMemoryRecords(bytes(corrupt)), [], 0, None, None, True, 0).take(None)
    except CorruptRecordException:
        return True
    return False
