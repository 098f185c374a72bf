"""Windows on the real broker: a worker killed with -9 mid-window, stopped with SIGTERM mid-window, or
partitions moving between workers mid-window, close exactly the windows, with exactly the aggregates,
of a worker that ran through alone (state restored from the changelog, no input lost or counted twice)."""
from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest
import yaml

from streams.config import parse_config
from streams.runtime.worker import Worker
from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for
from tests.integration.test_worker_failures import spawn_worker

pytestmark = pytest.mark.broker

DEVICES = 6
TOTAL = 24_000


def reading(i: int) -> dict:
    # 2 ms of event time per reading, out of order by up to 49 ms; every 997th is 3 s late (past the lateness)
    ts = 1_700_000_000_000 + i * 2 - (i * 7) % 50 - (3_000 if i % 997 == 996 else 0)
    return {"device": f"d{i % DEVICES}", "ts": ts, "temp": (i * 13) % 40 + (0.5 if i % 2 else 0), "n": i}


def flush(device: int) -> dict:
    return {"device": f"d{device}", "ts": 1_800_000_000_000, "temp": 0, "n": -1}  # closes every window before it


def windows_config(bootstrap, src, out, dlq, group) -> dict:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"max_batch_records": 50, "commit_interval_ms": 200, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "runtime": {"shutdown_grace_s": 10},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src, "enrich": [{
            "type": "windows", "name": "temp1s", "window": "tumbling", "size": "1s", "allowed_lateness": "100ms",
            "key": "$.device", "time": "$.ts",
            "aggregations": {"readings": {"op": "count"}, "total": {"op": "sum", "field": "$.temp"},
                             "mean": {"op": "mean", "field": "$.temp"}, "low": {"op": "min", "field": "$.temp"},
                             "first": {"op": "first", "field": "$.n"}, "distinct": {"op": "distinct", "field": "$.temp"}},
        }]}],
        "rules": [{"name": "windows", "event_pattern": {"detail-type": ["Window Result"]},
                   "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }


def write_config(tmp_path, bootstrap, src, out, dlq, group) -> str:
    path = tmp_path / f"{group}.yaml"
    # keys in their order: the in-process worker of the SIGTERM test reads the same config
    path.write_text(yaml.safe_dump(windows_config(bootstrap, src, out, dlq, group), sort_keys=False))
    return str(path)


async def closed_windows(bootstrap: str, topic: str) -> dict[str, list]:
    """id -> every detail delivered under it (a result delivered again after the crash has the same id)."""
    out: dict[str, list] = {}
    for message in await read_all(bootstrap, topic, idle=0.5, timeout=15):
        event = orjson.loads(message.value)
        out.setdefault(event["id"], []).append(event["detail"])
    return out


async def run_to_the_end(bootstrap: str, cfg: str, group: str, src: str) -> None:
    """Run a worker until it has committed every input record: each output it produced is delivered."""
    worker = spawn_worker(cfg)
    try:
        async def done():
            return sum(o or 0 for o in (await committed_offsets(bootstrap, group, src)).values()) == TOTAL + DEVICES
        await wait_for(done, timeout=120, interval=0.5, message="every input record to be committed")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read().decode()


MID_STREAM = 8_000  # readings on the topic when a worker is stopped; the rest come after


async def started_mid_stream(bootstrap: str, cfg: str, group: str, src: str, readings: list, keys: list):
    """A worker working through its input, windows open, state changes in flight: it has committed,
    and more input has just arrived, however fast the worker is on this machine."""
    await produce(bootstrap, src, readings[:2_000], keys[:2_000])
    worker = spawn_worker(cfg)
    try:
        async def progressed():
            return sum(o or 0 for o in (await committed_offsets(bootstrap, group, src)).values()) > 0
        await wait_for(progressed, timeout=60, interval=0.05, message="the first worker to commit")
        await produce(bootstrap, src, readings[2_000:MID_STREAM], keys[2_000:MID_STREAM])
    except BaseException:
        worker.kill()
        worker.wait()
        raise
    return worker


async def test_kill_9_mid_window_then_restart_closes_the_same_windows_as_a_run_without_crash(bootstrap_servers,
                                                                                            tmp_path):
    src, dlq = unique("iot"), unique("dlq")
    crashed_out, clean_out = unique("crashed"), unique("clean")
    await create_topics(bootstrap_servers, src, crashed_out, clean_out, dlq, partitions=2)
    readings = [reading(i) for i in range(TOTAL)]
    keys = [r["device"].encode() for r in readings]

    crash_group = unique("g")
    cfg = write_config(tmp_path, bootstrap_servers, src, crashed_out, dlq, crash_group)
    first = await started_mid_stream(bootstrap_servers, cfg, crash_group, src, readings, keys)
    first.send_signal(signal.SIGKILL)
    first.wait()
    committed = sum(o or 0 for o in (await committed_offsets(bootstrap_servers, crash_group, src)).values())
    assert 0 < committed < TOTAL, "killed mid-stream"
    await produce(bootstrap_servers, src, readings[MID_STREAM:], keys[MID_STREAM:])
    await produce(bootstrap_servers, src, [flush(d) for d in range(DEVICES)], [f"d{d}".encode() for d in range(DEVICES)])

    # the run without a crash, over the same input: how many windows close, and with what
    clean_group = unique("g")
    await run_to_the_end(bootstrap_servers, write_config(tmp_path, bootstrap_servers, src, clean_out, dlq, clean_group),
                         clean_group, src)
    clean = await closed_windows(bootstrap_servers, clean_out)
    assert len(clean) >= DEVICES * TOTAL * 2 // 1000  # every device's 1 s windows (48 s of event time)
    assert all(len(details) == 1 for details in clean.values())

    await run_to_the_end(bootstrap_servers, cfg, crash_group, src)
    crashed = await closed_windows(bootstrap_servers, crashed_out)
    assert crashed.keys() == clean.keys(), "no window lost, none invented"
    for id_, details in crashed.items():
        # a result may be delivered twice (at-least-once, same id), but always with the same aggregates
        assert all(detail == clean[id_][0] for detail in details), (details, clean[id_])
    duplicates = sum(len(d) - 1 for d in crashed.values())
    print(f"kill -9 with {committed} of {TOTAL} committed: {len(crashed)} windows, {duplicates} delivered twice")


async def test_sigterm_mid_window_flushes_the_open_windows_and_a_restart_emits_each_window_once(bootstrap_servers,
                                                                                                tmp_path):
    """An orderly stop leaves nothing to replay: the open windows' state is in the changelog up to the
    offsets committed, so the restarted worker resumes them and emits every window exactly once.
    The stop is what the SIGTERM handler does (streams/service.py: request_stop), asked for the moment
    a batch's state changes were made, not yet written to the changelog: the worst moment, every time."""
    src, dlq = unique("iot"), unique("dlq")
    stopped_out, clean_out = unique("stopped"), unique("clean")
    await create_topics(bootstrap_servers, src, stopped_out, clean_out, dlq, partitions=2)
    readings = [reading(i) for i in range(TOTAL)]
    keys = [r["device"].encode() for r in readings]
    group = unique("g")
    cfg = write_config(tmp_path, bootstrap_servers, src, stopped_out, dlq, group)
    await produce(bootstrap_servers, src, readings[:MID_STREAM], keys[:MID_STREAM])
    worker = Worker(parse_config(windows_config(bootstrap_servers, src, stopped_out, dlq, group), environ={}))
    hold, batches = worker.state.hold, []

    def hold_then_stop(tickets) -> None:  # SIGTERM while batch 40 (of 50 records) is being processed
        hold(tickets)
        batches.append(1)
        if len(batches) == 40:
            worker.request_stop()
    worker.state.hold = hold_then_stop  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: worker.stopping, timeout=60, message="the worker to be stopped mid-stream")
    asked = time.monotonic()
    await asyncio.wait_for(task, 30)
    took = time.monotonic() - asked
    # well inside the 10 s grace: it did not wait for state changes that were never going to be written
    assert took < 6, f"the stop took {took:.1f}s"
    committed = await committed_offsets(bootstrap_servers, group, src)
    assert 0 < sum(o or 0 for o in committed.values()) < TOTAL, "stopped mid-stream"
    changelog: dict[int, dict] = {}
    for message in await read_all(bootstrap_servers, f"{group}-{src}-temp1s-changelog", idle=0.5, timeout=15):
        if message.key == b"~":
            changelog[message.partition] = orjson.loads(message.value)
    for partition, offset in committed.items():
        if offset:  # the state holds exactly the committed records: a restart replays nothing
            assert changelog[partition]["offset"] == offset - 1, (partition, offset, changelog)
    await produce(bootstrap_servers, src, readings[MID_STREAM:], keys[MID_STREAM:])
    await produce(bootstrap_servers, src, [flush(d) for d in range(DEVICES)], [f"d{d}".encode() for d in range(DEVICES)])

    clean_group = unique("g")
    await run_to_the_end(bootstrap_servers, write_config(tmp_path, bootstrap_servers, src, clean_out, dlq, clean_group),
                         clean_group, src)
    clean = await closed_windows(bootstrap_servers, clean_out)
    await run_to_the_end(bootstrap_servers, cfg, group, src)
    stopped = await closed_windows(bootstrap_servers, stopped_out)
    assert stopped.keys() == clean.keys(), "no window lost, none invented"
    bad = {i: (d, clean[i]) for i, d in stopped.items() if d != clean[i]}
    assert not bad, f"{len(bad)} windows delivered more than once or with other aggregates"


async def test_window_state_follows_its_partitions_through_rebalances(bootstrap_servers, tmp_path):
    src, dlq, out, clean_out = unique("iot"), unique("dlq"), unique("shared"), unique("clean")
    await create_topics(bootstrap_servers, src, out, clean_out, dlq, partitions=4)
    readings = [reading(i) for i in range(TOTAL)] + [flush(d) for d in range(DEVICES)]
    keys = [r["device"].encode() for r in readings]
    group = unique("g")
    settings = windows_config(bootstrap_servers, src, out, dlq, group)
    settings["consumer"].update({"session_timeout_ms": 6000, "heartbeat_interval_ms": 500})
    config = parse_config(settings, environ={})
    step = 2_000
    sent = 0

    async def produce_some():
        nonlocal sent
        await produce(bootstrap_servers, src, readings[sent:sent + step], keys[sent:sent + step])
        sent += step

    a, b = Worker(config), Worker(config)
    task_a = asyncio.create_task(a.run())
    await wait_for(lambda: a.joined, message="worker a to join")
    await produce_some()
    task_b = asyncio.create_task(b.run())  # takes partitions, with their open windows, from a
    await wait_for(lambda: b.joined and a.assigned and b.assigned, timeout=30, message="both workers to share partitions")
    for _ in range(4):
        await produce_some()
        await asyncio.sleep(0.3)
    b.request_stop()  # gives them back mid-window
    await asyncio.wait_for(task_b, 30)
    await wait_for(lambda: len(a.assigned) == 4, timeout=30, message="worker a to take every partition back")
    while sent < len(readings):
        await produce_some()

    async def all_committed():
        return sum(o or 0 for o in (await committed_offsets(bootstrap_servers, group, src)).values()) == len(readings)
    try:
        await wait_for(all_committed, timeout=120, interval=0.5, message="every input record to be committed")
    finally:
        a.request_stop()
        await asyncio.wait_for(task_a, 30)
    assert b.stats.consumed > 0 and a.stats.consumed > 0

    clean_group = unique("g")
    await run_to_the_end(bootstrap_servers, write_config(tmp_path, bootstrap_servers, src, clean_out, dlq, clean_group),
                         clean_group, src)
    clean, shared = await closed_windows(bootstrap_servers, clean_out), await closed_windows(bootstrap_servers, out)
    assert shared.keys() == clean.keys()
    for id_, details in shared.items():
        assert all(detail == clean[id_][0] for detail in details), (details, clean[id_])
