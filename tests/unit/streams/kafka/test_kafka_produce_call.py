"""How a produce call to a shared topic settles its targets' deliveries: the whole call once every
batch is acked, and a failed batch's records dead-lettered by the targets that queued them."""
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "integration"))

from sink_helpers import DeadLetterRecorder, deliveries  # noqa: E402

from streams.targets.kafka import KafkaTarget, TopicSender, _Call  # noqa: E402


def _setup(loop):
    asyncio.set_event_loop(loop)
    dead = DeadLetterRecorder()
    sender = TopicSender("out", None)  # not attached: it queues what the targets write, sends nothing
    a, b = (KafkaTarget(name, "out", None, 100, dead) for name in ("a", "b"))
    a._sender = b._sender = sender
    items_a, ticket_a = deliveries("a", [{"n": i} for i in range(3)], partition=0)
    items_b, ticket_b = deliveries("b", [{"n": i} for i in range(2)], partition=1, first_offset=10)
    a.submit(items_a)
    b.submit(items_b)
    chunks = [(a, items_a), (b, items_b)]
    call = _Call(sender, chunks)
    return dead, a, b, ticket_a, ticket_b, call


def _future(loop, exc=None):
    future = loop.create_future()
    future.set_exception(exc) if exc else future.set_result(None)
    return future


def test_a_call_settles_every_target_once_all_its_batches_are_acked():
    loop = asyncio.new_event_loop()
    try:
        dead, a, b, ticket_a, ticket_b, call = _setup(loop)
        call.waiting = 2
        call.acked([0, 3], _future(loop))
        assert a.in_flight == 3 and b.in_flight == 2  # one batch of the call is still out
        call.acked([1, 2, 4], _future(loop))
        assert (a.in_flight, b.in_flight) == (0, 0)
        assert (ticket_a.pending, ticket_b.pending) == (1, 1)  # only the pipeline's own holds
        assert dict(a.in_flight_by_partition) == {("t", 0): 0} and not dead.failures
    finally:
        loop.close()


def test_a_failed_batch_is_dead_lettered_by_its_own_targets_and_the_rest_delivered():
    loop = asyncio.new_event_loop()
    try:
        dead, a, b, ticket_a, ticket_b, call = _setup(loop)
        call.waiting = 2
        call.acked([1, 3], _future(loop, RuntimeError("broker said no")))
        call.acked([0, 2, 4], _future(loop))
        assert (a.in_flight, b.in_flight) == (0, 0)
        assert (ticket_a.pending, ticket_b.pending) == (1, 1)
        assert sorted((f.target, f.record.offset, f.error) for f in dead.failures) == [
            ("a", 1, "ProduceFailed"), ("b", 10, "ProduceFailed")]
    finally:
        loop.close()


def _record_chunk(rule, records, runs):
    from streams.targets.base import RecordChunk

    return RecordChunk.of(rule, records, [r.key for r in records], [r.value for r in records], runs)


def test_records_of_a_plain_rule_settle_per_ticket_and_a_failed_batch_names_rule_and_target():
    """A plain rule's records go to a kafka target as they are (RecordChunk): they produce their
    own value and key, count against their partitions' tickets, and a failed batch dead-letters
    exactly its records, with the rule and target named."""
    from processors.core import SourceRecord
    from streams.runtime.offsets import Ticket
    from streams.targets.kafka import _columns

    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        dead = DeadLetterRecorder()
        sender = TopicSender("out", None)
        target = KafkaTarget("hot/out", "out", None, 100, dead)
        target._sender = sender
        p0 = [SourceRecord("in", 0, i, 0, b"k%d" % i, b'{"n": %d}' % i) for i in range(3)]
        p1 = [SourceRecord("in", 1, 10 + i, 0, None, b'{"m": %d}' % i) for i in range(2)]
        t0, t1 = Ticket(3), Ticket(12)
        chunk = _record_chunk("hot", p0 + p1, [(t0, 3, ("in", 0)), (t1, 2, ("in", 1))])
        target.submit_records(chunk)
        assert (target.in_flight, t0.pending, t1.pending) == (5, 4, 3)  # plus the pipeline's own hold
        assert dict(target.in_flight_by_partition) == {("in", 0): 3, ("in", 1): 2}
        [(queued_by, queued)] = sender._queue
        assert queued_by is target and list(zip(*_columns(queued))) == [
            (b"k0", b'{"n": 0}'), (b"k1", b'{"n": 1}'), (b"k2", b'{"n": 2}'), (None, b'{"m": 0}'), (None, b'{"m": 1}')]
        call = _Call(sender, [(target, queued)])
        call.waiting = 2
        call.acked([1, 4], _future(loop, RuntimeError("broker said no")))
        call.acked([0, 2, 3], _future(loop))
        assert (target.in_flight, t0.pending, t1.pending) == (0, 1, 1)
        assert [(f.record.partition, f.record.offset, f.rule, f.target, f.error) for f in dead.failures] == [
            (0, 1, "hot", "hot/out", "ProduceFailed"), (1, 11, "hot", "hot/out", "ProduceFailed")]
    finally:
        loop.close()


def test_partition_runs_split_a_batch_by_topic_and_partition():
    """The runs the worker counts plain records by: grouped by partition number, and split where
    one topic's last partition has the number of the next topic's first."""
    from itertools import groupby

    from hypothesis import given
    from hypothesis import strategies as st

    from processors.core import SourceRecord
    from streams.runtime.dispatch import partition_runs as _partition_runs

    @given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 2), st.integers(1, 3)), max_size=8))
    def check(blocks):
        seen, records = set(), []
        for topic, partition, n in blocks:  # as in a batch: each (topic, partition) once, topics in turn
            if (topic, partition) in seen or (records and records[-1].topic != topic and topic in {t for t, _ in seen}):
                continue
            seen.add((topic, partition))
            records += [SourceRecord(topic, partition, i, 0, None, b"") for i in range(n)]
        tickets = {tp: object() for tp in seen}
        expected = [(tickets[tp], len(list(g)), tp) for tp, g in groupby(records, lambda r: (r.topic, r.partition))]
        assert _partition_runs(records, tickets) == expected
    check()


def test_a_target_that_takes_items_gets_the_chunks_own_keys_and_values():
    """Plain records after enrichment carry the enriched event's JSON, not the record's bytes: a
    target that takes (Delivery, Ticket) items (HTTP, S3, ...) must get those values."""
    from processors.core import SourceRecord
    from streams.runtime.offsets import Ticket
    from streams.targets.base import Target

    class Recording(Target):
        def write(self, items):
            self.items = items

    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        target = Recording("enriched/http", 100, DeadLetterRecorder())
        records = [SourceRecord("in", p, 5, 0, b"orig-key", b'{"raw": 1}') for p in (0, 1)]
        t0, t1 = Ticket(6), Ticket(6)
        chunk = _record_chunk("enriched", records, [(t0, 1, ("in", 0)), (t1, 1, ("in", 1))])
        chunk.keys, chunk.values = [b"k0", None], [b'{"e": 0}', b'{"e": 1}']
        target.submit_records(chunk)
        assert [(d.target, d.rule, d.key, d.payload, d.record.partition, ticket) for d, ticket in target.items] == [
            ("enriched/http", "enriched", b"k0", b'{"e": 0}', 0, t0), ("enriched/http", "enriched", None, b'{"e": 1}', 1, t1)]
        assert (target.in_flight, t0.pending, t1.pending) == (2, 2, 2)
    finally:
        loop.close()
