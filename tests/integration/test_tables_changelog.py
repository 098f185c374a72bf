"""Reference tables bootstrapped from a compacted topic, and state restored from changelogs (real broker)."""
from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processors.core import SourceRecord
from processors.decode import Decoder
from processors.enrich import ReferenceJoin, ReferenceTable, Sessioniser
from processors.normalise import ClickstreamNormaliser
from streams.kafka.changelog import ensure_changelog_topic, read_changelog, restore_state
from streams.kafka.tables import ReferenceTableLoader
from tests.samples import debezium

pytestmark = pytest.mark.broker

def changelog_topic(app_id: str, store: str) -> str:
    return f"{app_id}-{store}-changelog"


class ChangelogWriter:
    """Writes state changes the way the worker does (key = state key, value = JSON, null = delete)."""

    def __init__(self, producer, topic: str):
        self.producer, self.topic = producer, topic

    async def write(self, changes) -> int:
        futures = [await self.producer.send(self.topic, key=key.encode(),
                                            value=None if value is None else orjson.dumps(value), partition=partition)
                   for partition, key, value in changes]
        if futures:
            await asyncio.gather(*futures)
        return len(futures)



async def create_topic(bootstrap, name, partitions, compact=False):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = {"cleanup.policy": "compact"} if compact else {}
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def producer_for(bootstrap):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    return producer


def j(v):
    return None if v is None else orjson.dumps(v)


async def wait_until(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_reference_table_bootstraps_before_ready_then_follows(bootstrap_servers):
    topic = f"registry.devices.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap_servers, topic, 2, compact=True)
    producer = await producer_for(bootstrap_servers)
    cdc_row = debezium()["postgres_create"]
    try:
        for key, value, partition in [
            (b"sensor-1", {"site": "greenhouse-1"}, 0),
            (b"sensor-2", {"site": "greenhouse-2"}, 1),
            (b"sensor-1", {"site": "greenhouse-9"}, 0),  # later value for the same key wins
            (b"sensor-3", {"site": "old"}, 1),
            (b"sensor-3", None, 1),  # tombstone
            (j(cdc_row["key"]), cdc_row["value"], 0),  # a row fed straight from Debezium
        ]:
            await producer.send_and_wait(topic, key=key, value=j(value), partition=partition)
        table = ReferenceTable("device")
        loader = ReferenceTableLoader(bootstrap_servers, topic, table)
        await loader.start(timeout=30)
        try:
            assert loader.ready.is_set()
            assert table.rows == {"sensor-1": {"site": "greenhouse-9"}, "sensor-2": {"site": "greenhouse-2"},
                                  "1001": cdc_row["value"]["after"]}
            # keeps following: a new row, a delete via tombstone, a Debezium delete
            await producer.send_and_wait(topic, key=b"sensor-4", value=j({"site": "field"}), partition=1)
            await producer.send_and_wait(topic, key=b"sensor-2", value=None, partition=1)
            deleted = debezium()["postgres_delete"]
            await producer.send_and_wait(topic, key=j(deleted["key"]), value=j(deleted["value"]), partition=0)
            await wait_until(lambda: "sensor-4" in table.rows and "sensor-2" not in table.rows
                             and "1001" not in table.rows)

            from tests.unit.processors.test_enrich import iot_events
            events = iot_events([{"device_id": "sensor-4", "timestamp": 1, "measurements": {"t": 1}}])
            out = ReferenceJoin(table, "detail.device_id", ["site"]).process(events, [])
            assert out[0].body["detail"]["device"] == {"site": "field"}
        finally:
            await loader.stop()
    finally:
        await producer.stop()


async def test_loader_names_a_missing_topic(bootstrap_servers):
    loader = ReferenceTableLoader(bootstrap_servers, f"no-such-{uuid.uuid4().hex[:6]}", ReferenceTable("x"))
    with pytest.raises(TimeoutError, match="not found"):
        await loader.start(timeout=1.5)


async def consume(bootstrap, topic, partition, start, count):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        got = []
        while len(got) < count:
            for recs in (await consumer.getmany(tp, timeout_ms=500)).values():
                got.extend(recs)
        return [SourceRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value) for r in got[:count]]
    finally:
        await consumer.stop()


class Worker:
    """The processing half of a worker: decode -> normalise -> sessionise, state persisted per batch."""

    def __init__(self, producer, changelog):
        self.stages = [ClickstreamNormaliser(), Sessioniser()]
        self.sessions = self.stages[1]
        self.writer = ChangelogWriter(producer, changelog)

    async def run(self, records):
        failures = []
        events = Decoder().decode(records, failures)
        for stage in self.stages:
            events = stage.process(events, failures)
        assert failures == []
        await self.writer.write(self.sessions.state.changes())
        return events


async def test_sessions_continue_across_a_worker_restart(bootstrap_servers):
    source = f"clicks.{uuid.uuid4().hex[:8]}"
    changelog = changelog_topic("eventweir-test", f"sessions-{uuid.uuid4().hex[:6]}")
    await create_topic(bootstrap_servers, source, 2)
    await ensure_changelog_topic(bootstrap_servers, changelog, 2)
    await ensure_changelog_topic(bootstrap_servers, changelog, 2)  # idempotent
    producer = await producer_for(bootstrap_servers)
    try:
        def click(n, user, minute):
            return {"event_id": f"e{n}", "event_name": "page_view", "anonymous_id": f"anon-{user}", "user_id": user,
                    "platform": "web", "timestamp": f"2024-11-25T10:{minute:02d}:00Z"}
        plan = [click(0, "alice", 0), click(1, "bob", 1), click(2, "alice", 5),
                click(3, "alice", 20), click(4, "bob", 50), click(5, "alice", 21)]
        for doc in plan:
            await producer.send_and_wait(source, key=doc["user_id"].encode(), value=j(doc), partition=1)

        first = Worker(producer, changelog)
        before = await first.run(await consume(bootstrap_servers, source, 1, 0, 3))
        alice_session = next(e.body["detail"]["session"]["id"] for e in before
                             if e.body["detail"].get("user_id") == "alice")
        del first  # the worker is gone; only the changelog remembers

        second = Worker(producer, changelog)
        await restore_state(second.sessions.state, bootstrap_servers, changelog, [1])
        after = await second.run(await consume(bootstrap_servers, source, 1, 3, 3))
        clicks = [(e.body["detail"]["user_id"], e.body["detail"]["session"]) for e in after
                  if e.body["detail-type"] == "Clickstream Event"]
        assert clicks[0] == ("alice", {"id": alice_session, "sequence": 3})  # same session, sequence continues
        assert clicks[2] == ("alice", {"id": alice_session, "sequence": 4})
        assert clicks[1][0] == "bob" and clicks[1][1]["sequence"] == 1  # 49 minutes idle: a new session
        ended = [e.body["detail"] for e in after if e.body["detail-type"] == "Session Ended"]
        assert [d["user"] for d in ended] == ["bob"]
        started = [e.body["detail"]["user"] for e in after if e.body["detail-type"] == "Session Started"]
        assert started == ["bob"]  # alice's session was not restarted

        # the changelog holds the latest state per key, on the source's partition
        stored = await read_changelog(bootstrap_servers, changelog, [0, 1])
        assert stored[0] == {} and stored[1]["alice"][:2] == [alice_session, 4]
        with pytest.raises(ValueError, match="needs as many partitions"):
            await read_changelog(bootstrap_servers, changelog, [5], timeout=2)
    finally:
        await producer.stop()
