"""State changes are written to the changelog once per `consumer.changelog_interval_ms`, each changed
key once, and the offsets of the batches that changed it are committed only after that write."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.config import parse_config
from streams.runtime.worker import Worker
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for

pytestmark = pytest.mark.broker

DEVICES = 4
TOTAL = 400  # 40 batches of 10: each device changes in every batch


def config(bootstrap: str, src: str, dlq: str, group: str, interval_ms: int) -> dict:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"max_batch_records": 10, "commit_interval_ms": 50, "fetch_timeout_ms": 50,
                     "changelog_interval_ms": interval_ms},
        "http": {"host": "127.0.0.1", "port": 0},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src, "enrich": [{
            "type": "windows", "name": "counts", "window": "tumbling", "size": "1h", "key": "$.device",
            "time": "$.ts", "aggregations": {"readings": {"op": "count"}}}]}],
        "rules": [],
    }


async def produce_readings(bootstrap: str, src: str) -> None:
    """TOTAL readings of DEVICES devices, each keyed by its device."""
    await produce(bootstrap, src, [{"device": f"d{i % DEVICES}", "ts": 1_700_000_000_000 + i} for i in range(TOTAL)],
                  [f"d{i % DEVICES}".encode() for i in range(TOTAL)])


async def run_until_committed(bootstrap: str, settings: dict, src: str, group: str) -> None:
    worker = Worker(parse_config(settings, environ={}))
    task = asyncio.create_task(worker.run())

    async def all_committed() -> bool:
        return sum(o or 0 for o in (await committed_offsets(bootstrap, group, src)).values()) == TOTAL
    try:
        await wait_for(all_committed, timeout=60, message="every record to be committed")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def changelog_by_key(bootstrap: str, topic: str) -> dict[bytes, list[dict]]:
    out: dict[bytes, list[dict]] = {}
    for message in await read_all(bootstrap, topic, idle=0.5, timeout=15):
        out.setdefault(message.key, []).append(orjson.loads(message.value))
    return out


@pytest.mark.parametrize("interval_ms", [60_000, 0])
async def test_a_key_changed_in_many_batches_is_written_once_per_interval(bootstrap_servers, interval_ms):
    src, dlq = unique("readings"), unique("dlq")
    await create_topics(bootstrap_servers, src, dlq, partitions=1)
    await produce_readings(bootstrap_servers, src)
    group = unique("g")
    await run_until_committed(bootstrap_servers, config(bootstrap_servers, src, dlq, group, interval_ms), src, group)

    changelog = await changelog_by_key(bootstrap_servers, f"{group}-{src}-counts-changelog")
    devices = {key: values for key, values in changelog.items() if key != b"~"}
    assert len(devices) == DEVICES
    for values in devices.values():  # the last value written holds every reading: nothing was lost
        assert values[-1]["open"][0][2] == [TOTAL // DEVICES]
    writes = max(len(values) for values in devices.values())
    if interval_ms:
        # the input was there from the start: one write when the worker caught up (and maybe one more
        # at the stop), not one per batch
        assert writes <= 2, f"a key was written {writes} times in one interval"
    else:
        assert writes >= 10, "with no interval, each batch's changes are written"  # the control


async def test_no_offset_is_committed_before_the_state_it_produced_is_in_the_changelog(bootstrap_servers):
    """The changelog writes stall (a slow or unreachable changelog topic): the worker processes its
    input but commits none of it; once the writes go through, everything is committed."""
    src, dlq = unique("readings"), unique("dlq")
    await create_topics(bootstrap_servers, src, dlq, partitions=1)
    await produce_readings(bootstrap_servers, src)
    group = unique("g")
    worker = Worker(parse_config(config(bootstrap_servers, src, dlq, group, 100), environ={}))
    writable = asyncio.Event()

    async def start_then_stall_the_changelog() -> None:
        await start()
        producer = worker.state._producer
        assert producer is not None
        send = producer.send_to_partition

        async def stalled_send(*args, **kwargs):
            await writable.wait()
            return await send(*args, **kwargs)
        producer.send_to_partition = stalled_send  # type: ignore[method-assign]
    start, worker.start = worker.start, start_then_stall_the_changelog  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: worker.stats.consumed == TOTAL, timeout=60, message="every record to be processed")
        await asyncio.sleep(0.5)  # ten commit intervals
        committed = await committed_offsets(bootstrap_servers, group, src)
        assert not any(committed.values()), f"committed {committed} with no state written"
        writable.set()

        async def all_committed() -> bool:
            return sum(o or 0 for o in (await committed_offsets(bootstrap_servers, group, src)).values()) == TOTAL
        await wait_for(all_committed, timeout=30, message="every record to be committed once the state is written")
    finally:
        writable.set()
        worker.request_stop()
        await asyncio.wait_for(task, 30)


async def test_a_state_write_cut_short_by_a_crash_is_left_out_on_restore(bootstrap_servers):
    """The changelog ends with the first records of a write (a worker killed while producing it): the
    state restored is the last complete write's, so no key is newer than the offset it claims."""
    from processors.enrich.sequence import SequenceGaps
    from streams.kafka.changelog import ensure_changelog_topic, restore_state
    topic = unique("changelog")
    await ensure_changelog_topic(bootstrap_servers, topic, 1)
    complete = [("kS0", {"next": 10, "missing": []}), ("kS1", {"next": 7, "missing": []}), ("~", 20)]
    cut_short = [("kS0", {"next": 15, "missing": []})]  # its `~` (and kS1) never written
    await produce(bootstrap_servers, topic, [value for _, value in complete + cut_short],
                  [key.encode() for key, _ in complete + cut_short])
    stage = SequenceGaps(key="$.symbol", sequence="$.seq")
    await restore_state(stage.state, bootstrap_servers, topic, [0])
    assert stage.state.table(0) == {"kS0": {"next": 10, "missing": []}, "kS1": {"next": 7, "missing": []}, "~": 20}
