"""Fetched records read a batch at a time (streams/kafka/fastpath/fetch_records.py) must be exactly what
aiokafka's own fetch path returns: the same records in the same order, and the same consumer
position after every getmany(), for any batches, fetch offset and record limit, including
transaction markers, aborted transactions, deserializers, compressed and legacy (magic 1) message
sets and corrupt batches."""
import gc
import struct
import weakref

import pytest
from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.fastpath import fetch_records

_, BatchPartitionRecords, BatchFetchResult = fetch_records._classes()
# aiokafka's own classes, whether or not another test has installed ours
ShippedRecords = BatchPartitionRecords.__mro__[1]
ShippedResult = BatchFetchResult.__mro__[1]
TP = TopicPartition("events", 3)
PRODUCER_ID = 7


def legacy_bytes(base_offset: int, records: list, gzip: bool) -> bytes:
    """A magic-1 message set, as an old producer or broker writes it: gzip wraps the records in
    one message whose offset is the last one's, the records inside numbered from 0."""
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=1 if gzip else 0, batch_size=1 << 20)
    for i, (key, value, _) in enumerate(records):
        builder.append(i if gzip else base_offset + i, timestamp=1_700_000_000_000 + i, key=key, value=value)
    data = bytearray(builder.build())
    if gzip:
        data[0:8] = struct.pack(">q", base_offset + len(records) - 1)  # outside the message CRC
    return bytes(data)


def batch_bytes(base_offset: int, records: list, transactional=False, control=False, corrupt=False,
                gzip=False) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=1 if gzip else 0, is_transactional=int(transactional or control),
        producer_id=PRODUCER_ID if transactional or control else -1, producer_epoch=0 if transactional or control else -1,
        base_sequence=0 if transactional or control else -1, batch_size=1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_700_000_000_000 + base_offset + i, key=key, value=value, headers=headers)
    data = bytearray(builder.build())
    data[0:8] = struct.pack(">q", base_offset)
    if control:
        data[21:23] = struct.pack(">h", struct.unpack(">h", data[21:23])[0] | 0x20)
    if control or corrupt:
        crc = calc_crc32c(bytes(data[21:]))
        data[17:21] = struct.pack(">I", crc ^ 1 if corrupt else crc)
    return bytes(data)


class State:
    paused = False

    def __init__(self, position):
        self.position = position

    def consumed_to(self, position):
        self.position = position


class Assignment:
    active = True

    def __init__(self, position):
        self.state = State(position)

    def state_value(self, tp):
        return self.state


def drain(records_class, result_class, data, start, limit, aborted=(), isolation=0, deserializer=None):
    """Every getmany() of one fetch: [(records, position after it, more left)], or the error."""
    assignment = Assignment(start)
    memory = fetch_records.RawMemoryRecords(data) if records_class is BatchPartitionRecords else MemoryRecords(data)
    records = records_class(TP, memory, list(aborted), start, deserializer, deserializer, True, isolation)
    result = result_class(TP, assignment=assignment, partition_records=records, backoff=0)
    calls = []
    try:
        while result.has_more():
            got = result.getall(limit)
            calls.append((got, assignment.state.position, result.has_more()))
    except CorruptRecordException as e:
        calls.append(("corrupt", str(e)))
    return calls


record = st.tuples(st.none() | st.binary(max_size=12), st.none() | st.binary(max_size=40),
                   st.lists(st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=4)), max_size=2))
def batches(kinds):
    return st.lists(st.tuples(st.lists(record, min_size=1, max_size=6), st.sampled_from(kinds),
                              st.integers(0, 3)),  # offsets a compaction left out after the batch
                    min_size=1, max_size=5)


# aiokafka reads a fetch as v2 batches or as old message sets by its first one's format, so a
# fetch here is all of one or the other
v2_batches = batches(["plain", "transactional", "control", "gzip"])
legacy_batches = batches(["legacy", "legacy-gzip"])


@st.composite
def fetches(draw):
    batches, offset, data = draw(v2_batches | legacy_batches), draw(st.integers(0, 1000)), b""
    first = offset
    for records, kind, gap in batches:
        if kind == "control":
            records = [(struct.pack(">hh", 0, 1), b"", [])]  # a commit marker
        if kind.startswith("legacy"):
            data += legacy_bytes(offset, records, gzip=kind == "legacy-gzip")
            gap = 0  # old message sets are not compacted into gaps here
        else:
            data += batch_bytes(offset, records, transactional=kind == "transactional",
                                control=kind == "control", gzip=kind == "gzip")
        offset += len(records) + gap
    return data, draw(st.integers(first, offset))


@settings(max_examples=300, deadline=None)
@given(fetch=fetches(), limit=st.none() | st.integers(1, 7), isolation=st.sampled_from([0, 1]))
def test_reads_every_fetch_as_aiokafka_does(fetch, limit, isolation):
    data, start = fetch
    ours = drain(BatchPartitionRecords, BatchFetchResult, data, start, limit, isolation=isolation)
    assert ours == drain(ShippedRecords, ShippedResult, data, start, limit, isolation=isolation)
    assert all(len(got) <= limit for got, *_ in ours if limit is not None)


@settings(max_examples=50, deadline=None)
@given(fetch=fetches(), limit=st.none() | st.integers(1, 7))
def test_aborted_transactions_and_deserializers_keep_aiokafkas_path(fetch, limit):
    data, start = fetch
    aborted = [(PRODUCER_ID, start)]
    assert drain(BatchPartitionRecords, BatchFetchResult, data, start, limit, aborted, isolation=1) == \
        drain(ShippedRecords, ShippedResult, data, start, limit, aborted, isolation=1)
    upper = lambda b: None if b is None else b.upper()  # noqa: E731
    assert drain(BatchPartitionRecords, BatchFetchResult, data, start, limit, deserializer=upper) == \
        drain(ShippedRecords, ShippedResult, data, start, limit, deserializer=upper)


def test_a_corrupt_batch_raises_after_the_good_ones_as_aiokafka_does():
    data = batch_bytes(0, [(b"k", b"v", [])] * 3) + batch_bytes(3, [(b"k", b"v", [])] * 2, corrupt=True)
    ours = drain(BatchPartitionRecords, BatchFetchResult, data, 0, 2)
    assert ours == drain(ShippedRecords, ShippedResult, data, 0, 2)
    assert ours[-1] == ("corrupt", f"[Error 2] CorruptRecordException: Invalid CRC - {TP}")
    # the call that meets the corrupt batch raises; its position stays at the records it did
    # not return, which are fetched again
    assert ours[:-1] == [(ours[0][0], 2, True)] and [r.offset for r in ours[0][0]] == [0, 1]


def test_getone_reads_the_same_records():
    data = batch_bytes(10, [(b"a", b"1", []), (None, b"2", [("h", b"x")])]) + batch_bytes(12, [(b"c", None, [])])
    ours = BatchPartitionRecords(TP, MemoryRecords(data), [], 11, None, None, True, 0)
    theirs = ShippedRecords(TP, MemoryRecords(data), [], 11, None, None, True, 0)
    assert list(ours) == list(theirs)
    assert [(r.offset, r.key, r.value, r.headers) for r in list(
        BatchPartitionRecords(TP, MemoryRecords(data), [], 11, None, None, True, 0))] == \
        [(11, None, b"2", (("h", b"x"),)), (12, b"c", None, ())]


def test_a_fetch_read_batch_by_batch_is_freed_as_soon_as_it_is_dropped():
    """A fetch's records object (and so its bytes, megabytes in a real fetch) goes when aiokafka
    drops it, without waiting for a cyclic GC pass, which the worker makes rare (tune_gc).
    aiokafka's own record generator held it in a reference cycle: 600-750 MB resident over 1M
    events in tests/bench/compare.py. aiokafka's path, which the generator serves, still works."""
    data = batch_bytes(0, [(b"k", b"v" * 50, [])] * 3) + batch_bytes(3, [(b"k", b"w", [])] * 2)
    gc.disable()
    try:
        for limit in (None, 2):  # all at once, and part of it (a revoked partition's leftovers)
            records = BatchPartitionRecords(TP, fetch_records.RawMemoryRecords(data), [], 0, None, None, True, 0)
            records.take(limit)
            gone = weakref.ref(records)
            del records
            assert gone() is None
    finally:
        gc.enable()
    deserialized = BatchPartitionRecords(TP, MemoryRecords(data), [], 0, bytes.upper, None, True, 0)
    assert [r.key for r in deserialized] == [b"K"] * 5


def test_install_replaces_aiokafkas_classes_and_the_floor_can_have_them_back():
    assert fetch_records.install()
    assert issubclass(fetcher.PartitionRecords, ShippedRecords) and fetcher.PartitionRecords is not ShippedRecords
    assert issubclass(fetcher.FetchResult, ShippedResult) and fetcher.FetchResult is not ShippedResult
    assert fetcher.MemoryRecords is fetch_records.RawMemoryRecords
    installed = fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords
    with fetch_records.as_shipped():
        assert (fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords) == \
            (ShippedRecords, ShippedResult, MemoryRecords)
    assert (fetcher.PartitionRecords, fetcher.FetchResult, fetcher.MemoryRecords) == installed


def test_batches_are_checked_with_the_cpus_crc_where_google_crc32c_is_compiled():
    import google_crc32c

    assert google_crc32c.implementation == "c"  # a wheel for this platform: what the install gets
    data = batch_bytes(0, [(b"k", b"v" * 50, [])] * 3) + batch_bytes(3, [(b"k", b"w" * 50, [])] * 2)
    records = BatchPartitionRecords(TP, fetch_records.RawMemoryRecords(data), [], 0, None, None, True, 0)
    assert records._data is data  # the hardware check, not aiokafka's
    assert [r.offset for r in records.take(None)[0]] == [0, 1, 2, 3, 4]
    for flipped in (data.index(b"v" * 50), data.rindex(b"w" * 50)):  # a value's byte in each batch: parses, fails the CRC
        corrupt = bytearray(data)
        corrupt[flipped] ^= 0x10
        records = BatchPartitionRecords(TP, fetch_records.RawMemoryRecords(bytes(corrupt)), [], 0, None, None, True, 0)
        with pytest.raises(CorruptRecordException):
            records.take(None)


def test_the_self_check_notices_a_reader_that_differs():
    class OffByOne(BatchPartitionRecords):
        def take(self, limit):
            records, done = super().take(limit)
            return records[1:], done

    assert fetch_records.reads_alike(ShippedRecords, BatchPartitionRecords)
    assert not fetch_records.reads_alike(ShippedRecords, OffByOne)


@pytest.mark.parametrize("limit", [1, 3, None])
def test_the_sample_fetch_reads_alike(limit):
    data = fetch_records.sample_fetch()
    assert drain(BatchPartitionRecords, BatchFetchResult, data, 2, limit) == \
        drain(ShippedRecords, ShippedResult, data, 2, limit)
