"""Sequence gaps on the real broker: a worker killed with -9 mid-stream and restarted reports exactly the gaps
of the input (state restored from the changelog), a gap of committed input once, and any gap delivered again
(from input read again) with the same id and detail."""
from __future__ import annotations

import signal

import orjson
import pytest
import yaml

from tests.integration.kafka_helpers import committed_offsets, create_topics, produce, read_all, unique, wait_for
from tests.integration.test_worker_failures import spawn_worker

pytestmark = pytest.mark.broker

INSTRUMENTS = 6
PER_KEY = 5_000


def numbers_of(key: int) -> list[int]:
    """A feed's sequence numbers: gaps of 1-4 numbers, repeated numbers and swapped neighbours."""
    out, n = [], 0
    for j in range(PER_KEY):
        n += 1 + ((key + j) % 4 + 1 if j % 101 == 100 else 0)
        out.append(n)
        if j % 37 == 36:
            out.append(n)  # a duplicate
        if j % 59 == 58:
            out[-1], out[-2] = out[-2], out[-1]  # out of order: a gap of one, then filled
    return out


def ticks() -> list[dict]:
    feeds = [numbers_of(k) for k in range(INSTRUMENTS)]
    return [{"symbol": f"S{k}", "seq": feed[j], "px": j} for j in range(max(map(len, feeds)))
            for k, feed in enumerate(feeds) if j < len(feed)]


def reference_gaps(readings: list[dict]) -> set[tuple]:
    highest: dict[str, int] = {}
    gaps = set()
    for r in readings:
        last = highest.get(r["symbol"])
        if last is not None and r["seq"] > last + 1:
            gaps.add((r["symbol"], last + 1, r["seq"], r["seq"] - last - 1))
        highest[r["symbol"]] = r["seq"] if last is None else max(last, r["seq"])
    return gaps


def write_config(tmp_path, bootstrap, src, out, dlq, group) -> str:
    path = tmp_path / f"{group}.yaml"
    path.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "consumer": {"max_batch_records": 50, "commit_interval_ms": 200, "fetch_timeout_ms": 50},
        "http": {"host": "127.0.0.1", "port": 0},
        "runtime": {"shutdown_grace_s": 10},
        "dead_letter": {"topic": dlq},
        "sources": [{"topic": src, "enrich": [{"type": "sequence", "name": "ticks", "key": "$.symbol",
                                               "sequence": "$.seq", "source": "market.feed"}]}],
        "rules": [{"name": "gaps", "event_pattern": {"source": ["market.feed"], "detail-type": ["Gap Detected"]},
                   "targets": [{"id": "out", "type": "kafka", "topic": out}]}],
    }))
    return str(path)


async def delivered_gaps(bootstrap: str, topic: str) -> list[dict]:
    return [orjson.loads(m.value) for m in await read_all(bootstrap, topic, idle=0.5, timeout=15)]


async def run_to_the_end(bootstrap: str, cfg: str, group: str, src: str, total: int) -> None:
    worker = spawn_worker(cfg)
    try:
        async def done():
            return sum(o or 0 for o in (await committed_offsets(bootstrap, group, src)).values()) == total
        await wait_for(done, timeout=120, interval=0.5, message="every input record to be committed")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read().decode()


async def test_kill_9_then_restart_reports_every_gap_and_a_committed_one_once(bootstrap_servers, tmp_path):
    src, out, clean_out, dlq = unique("ticks"), unique("gaps"), unique("clean-gaps"), unique("dlq")
    await create_topics(bootstrap_servers, src, out, clean_out, dlq, partitions=2)
    readings = ticks()
    expected = reference_gaps(readings)
    assert len(expected) > 100
    keys = [r["symbol"].encode() for r in readings]
    # a first part, then the rest once the worker has committed, killed straight after: however fast
    # the worker is on this machine, it is killed mid-stream with its changelog ahead of its commits
    first_part = 2_000
    await produce(bootstrap_servers, src, readings[:first_part], keys[:first_part])
    group = unique("g")
    cfg = write_config(tmp_path, bootstrap_servers, src, out, dlq, group)
    first = spawn_worker(cfg)
    try:
        async def progressed():
            return sum(o or 0 for o in (await committed_offsets(bootstrap_servers, group, src)).values()) > 0
        await wait_for(progressed, timeout=60, interval=0.02, message="the first worker to commit")
        await produce(bootstrap_servers, src, readings[first_part:], keys[first_part:])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    committed = {p: o or 0 for p, o in (await committed_offsets(bootstrap_servers, group, src)).items()}
    assert 0 < sum(committed.values()) < len(readings), "killed mid-stream"
    where = {}  # (symbol, seq) -> (partition, offset) of its first record: the one that reveals a gap
    for m in await read_all(bootstrap_servers, src, expect=len(readings)):
        body = orjson.loads(m.value)
        where.setdefault((body["symbol"], body["seq"]), (m.partition, m.offset))

    await run_to_the_end(bootstrap_servers, cfg, group, src, len(readings))
    crashed = await delivered_gaps(bootstrap_servers, out)
    details = {(d["key"], d["expected"], d["got"], d["missing"]) for d in (e["detail"] for e in crashed)}
    assert details == expected, "no gap lost, none invented"
    by_id: dict[str, list[dict]] = {}
    for event in crashed:
        by_id.setdefault(event["id"], []).append(event["detail"])
    assert len(by_id) == len(expected)
    for details_of_id in by_id.values():  # delivered again only for input read again, as the same event
        assert all(d == details_of_id[0] for d in details_of_id)
        partition, offset = where[(details_of_id[0]["key"], details_of_id[0]["got"])]
        if offset < committed[partition]:
            assert len(details_of_id) == 1, f"a gap of committed input delivered twice: {details_of_id[0]}"

    clean_group = unique("g")
    await run_to_the_end(bootstrap_servers, write_config(tmp_path, bootstrap_servers, src, clean_out, dlq, clean_group),
                         clean_group, src, len(readings))
    clean = await delivered_gaps(bootstrap_servers, clean_out)
    assert sorted(e["id"] for e in clean) == sorted(by_id), "the same gap events as a run without the crash"
    twice = sum(len(d) - 1 for d in by_id.values())
    print(f"kill -9 with {sum(committed.values())} of {len(readings)} committed: {len(by_id)} gaps, {twice} delivered twice")
