"""Archives and replays, driven by boto3 against a running worker on the real broker: an archive
keeps its bus's matching events in a topic, a replay sends a time range of them back to the bus
with `replay-name`, to the rules it names only, never archived again, resumed after a restart."""
from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from botocore.exceptions import ClientError

from streams import metrics
from streams.config import ArchiveLakeSettings
from streams.http.eventbridge.api import ApiError
from streams.http.eventbridge.archives import _check_lake
from tests.integration.kafka_helpers import create_topics, read_all, unique, wait_for
from tests.integration.test_event_buses import ARN, start
from tests.integration.test_eventbridge_api import call, client, entry, error_of
from tests.integration.test_rules_targets import start_worker, stop_worker
from tests.integration.test_s3_sink import jsonl, lake_objects, new_bucket, s3_client

pytestmark = pytest.mark.broker
BUS = f"{ARN}:event-bus/default"
FAST = {"replay_start_delay_s": 0.3, "replay_progress_interval_s": 0.2, "replay_lease_s": 2.0}


async def two_rules(events, bootstrap_servers, worker) -> tuple[str, str, str]:
    """Rules `first` and `second`, both for source shop, each to a topic of its own."""
    out1, out2 = unique("out1"), unique("out2")
    await create_topics(bootstrap_servers, out1, out2)
    arn = (await call(events, "put_rule", Name="first", EventPattern=json.dumps({"source": ["shop"]})))["RuleArn"]
    await call(events, "put_targets", Rule="first", Targets=[{"Id": "k", "Arn": f"kafka://{out1}"}])
    await call(events, "put_rule", Name="second", EventPattern=json.dumps({"source": ["shop"]}))
    await call(events, "put_targets", Rule="second", Targets=[{"Id": "k", "Arn": f"kafka://{out2}"}])
    await wait_for(lambda: {"first/k", "second/k"} <= set(worker.targets), message="the rules to apply")
    return arn, out1, out2


async def archive_events(events, name: str, pattern: dict | None = None) -> None:
    made = await call(events, "create_archive", ArchiveName=name, EventSourceArn=BUS, RetentionDays=1,
                      **({"EventPattern": json.dumps(pattern)} if pattern else {}))
    assert made["ArchiveArn"] == f"{ARN}:archive/{name}" and made["State"] == "ENABLED"


async def wait_state(events, name: str, state: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        replay = await call(events, "describe_replay", ReplayName=name)
        if replay["State"] == state:
            return replay
        assert time.monotonic() < deadline, f"replay {name} is {replay['State']}, not {state}"
        await asyncio.sleep(0.2)


def body(record) -> dict:
    return json.loads(record.value)


async def test_a_replay_sends_its_time_range_to_the_rules_it_names_only(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, archives=FAST)
    try:
        events = client(port)
        bus_topic = worker.config.sources[0].topic
        first, out1, out2 = await two_rules(events, bootstrap_servers, worker)
        archive = unique("orders")
        await archive_events(events, archive, pattern={"source": ["shop"]})
        await wait_for(lambda: f"Events-Archive-{archive}/archive" in worker.targets, message="the archive's rule")
        described = await call(events, "describe_archive", ArchiveName=archive)
        assert (described["EventSourceArn"], described["RetentionDays"], described["EventCount"], described["State"],
                json.loads(described["EventPattern"])) == (BUS, 1, 0, "ENABLED", {"source": ["shop"]})

        before = datetime.now(UTC)
        await call(events, "put_events", Entries=[entry("shop", n) for n in (1, 2, 3)] + [entry("other", 0)])
        await read_all(bootstrap_servers, out1, expect=3)
        await asyncio.sleep(1.2)
        split = datetime.now(UTC)  # events after this are outside the replay's range
        await asyncio.sleep(0.2)
        await call(events, "put_events", Entries=[entry("shop", n) for n in (4, 5)])
        await read_all(bootstrap_servers, out2, expect=5)

        archive_topic = worker.control.store.archives[archive].topic

        async def archived() -> list[int]:
            return sorted(body(r)["detail"]["n"] for r in await read_all(bootstrap_servers, archive_topic, idle=0.5))
        await wait_for(lambda: worker.stats.matched.get(f"Events-Archive-{archive}") == 5, message="5 events archived")
        assert await archived() == [1, 2, 3, 4, 5]  # the `other` event does not match the archive's pattern
        # (EventCount is end minus start offsets; Tansu's end offset counts a batch of records as one)
        assert (await call(events, "describe_archive", ArchiveName=archive))["EventCount"] >= 1
        listed = (await call(events, "list_archives", NamePrefix=archive))["Archives"]
        assert [(a["ArchiveName"], a["EventSourceArn"], a["RetentionDays"]) for a in listed] == [(archive, BUS, 1)]

        replayed_before = metrics.REPLAYED_EVENTS._value.get()
        name = unique("replay")
        started = await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                             EventStartTime=before, EventEndTime=split, Destination={"Arn": BUS, "FilterArns": [first]})
        assert (started["ReplayArn"], started["State"]) == (f"{ARN}:replay/{name}", "STARTING")
        done = await wait_state(events, name, "COMPLETED")
        assert done["Destination"] == {"Arn": BUS, "FilterArns": [first]}
        assert done["EventStartTime"] <= done["EventLastReplayedTime"] < done["EventEndTime"]
        assert done["ReplayStartTime"] <= done["ReplayEndTime"]
        assert metrics.REPLAYED_EVENTS._value.get() - replayed_before == 3

        # the named rule gets the three events of the range again, with replay-name where AWS puts it
        got = [body(r) for r in await read_all(bootstrap_servers, out1, expect=8)]
        assert len(got) == 8
        replayed = [e for e in got if "replay-name" in e]
        assert sorted(e["detail"]["n"] for e in replayed) == [1, 2, 3]
        assert all(e["replay-name"] == name for e in replayed)
        assert list(replayed[0]) == ["version", "id", "detail-type", "source", "account", "time", "region",
                                     "replay-name", "resources", "detail"]
        # the other rule nothing, and the archive did not take its own replay back in
        assert len(await read_all(bootstrap_servers, out2, idle=1.0)) == 5
        assert await archived() == [1, 2, 3, 4, 5]
        # on the bus, the replayed events of an archive partition are in its order
        archive_order: dict[int, list[int]] = {}
        for r in await read_all(bootstrap_servers, archive_topic, idle=0.5):
            if body(r)["detail"]["n"] <= 3:
                archive_order.setdefault(r.partition, []).append(body(r)["detail"]["n"])
        bus_order: dict[int, list[int]] = {}
        for r in await read_all(bootstrap_servers, bus_topic, idle=0.5):
            if "replay-name" in body(r):
                bus_order.setdefault(r.partition, []).append(body(r)["detail"]["n"])
        assert bus_order == archive_order

        listed_replays = (await call(events, "list_replays", NamePrefix=name))["Replays"]
        assert [(r["ReplayName"], r["State"], r["EventSourceArn"]) for r in listed_replays] == \
            [(name, "COMPLETED", f"{ARN}:archive/{archive}")]
        assert await error_of(call(events, "cancel_replay", ReplayName=name)) == (
            "IllegalStatusException",
            "An error occurred because a replay can be canceled only when the state is Running or Starting.")

        # a replay naming no rule goes to every rule of the bus (still not to the archive)
        every = unique("replay")
        await call(events, "start_replay", ReplayName=every, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=split, Destination={"Arn": BUS})
        await wait_state(events, every, "COMPLETED")
        assert sorted(body(r)["detail"]["n"] for r in await read_all(bootstrap_servers, out2, expect=8)
                      if body(r).get("replay-name") == every) == [1, 2, 3]
        assert await archived() == [1, 2, 3, 4, 5]

        await call(events, "update_archive", ArchiveName=archive, Description="all shop events")
        assert (await call(events, "describe_archive", ArchiveName=archive))["Description"] == "all shop events"
        await call(events, "delete_archive", ArchiveName=archive)
        assert await error_of(call(events, "describe_archive", ArchiveName=archive)) == \
            ("ResourceNotFoundException", f"Archive {archive} does not exist.")
        await wait_for(lambda: f"Events-Archive-{archive}/archive" not in worker.targets, message="the archive's rule")
    finally:
        await stop_worker(worker, task)


async def test_archive_and_replay_errors_are_aws_s(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, archives=FAST)
    try:
        events = client(port)
        archive = unique("a")
        await archive_events(events, archive)
        other = (await call(events, "create_event_bus", Name=unique("other")))["EventBusArn"]
        now = datetime.now(UTC).timestamp()
        source = f"{ARN}:archive/{archive}"

        def replay(**extra):
            return call(events, "start_replay", **{"ReplayName": "r1", "EventSourceArn": source, "EventStartTime": now - 60,
                                                    "EventEndTime": now, "Destination": {"Arn": BUS}, **extra})

        cases = [
            (call(events, "create_archive", ArchiveName=archive, EventSourceArn=BUS),
             ("ResourceAlreadyExistsException", f"Archive {archive} already exists.")),
            (call(events, "create_archive", ArchiveName="x", EventSourceArn=f"{ARN}:event-bus/nope"),
             ("ResourceNotFoundException", "Event bus nope does not exist.")),
            (call(events, "create_archive", ArchiveName="x", EventSourceArn=BUS, EventPattern='{"source": "shop"}'),
             ("InvalidEventPatternException", None)),
            (call(events, "create_archive", ArchiveName="x", EventSourceArn=BUS, RetentionDays=2**62),
             ("ValidationException", None)),  # past what Kafka's retention.ms can hold: a 4xx, not a failed topic
            (call(events, "describe_archive", ArchiveName="nope"),
             ("ResourceNotFoundException", "Archive nope does not exist.")),
            (call(events, "delete_archive", ArchiveName="nope"),
             ("ResourceNotFoundException", "Archive nope does not exist.")),
            (call(events, "update_archive", ArchiveName=archive),
             ("ValidationException", "At least one of EventPattern, RetentionDays or Description must be provided.")),
            (call(events, "list_archives", EventSourceArn=f"{ARN}:event-bus/nope"),
             ("ResourceNotFoundException", "Event bus nope does not exist.")),
            (replay(EventSourceArn=f"{ARN}:archive/nope"),
             ("ValidationException", "Parameter EventSourceArn is not valid. Reason: Archive nope does not exist.")),
            (replay(EventEndTime=now - 60),
             ("ValidationException",
              "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.")),
            (replay(Destination={"Arn": other}),
             ("ValidationException", "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not "
                                     "permitted.")),
            (replay(Destination={"Arn": f"{ARN}:event-bus/nope"}),
             ("ResourceNotFoundException", "Event bus nope does not exist.")),
            (call(events, "describe_replay", ReplayName="nope"),
             ("ResourceNotFoundException", "Replay nope does not exist.")),
            (call(events, "cancel_replay", ReplayName="nope"),
             ("ResourceNotFoundException", "Replay nope does not exist.")),
        ]
        for coro, (code, message) in cases:
            got = await error_of(coro)
            assert got[0] == code and (message is None or got[1] == message), got
        await replay()
        assert await error_of(replay()) == ("ResourceAlreadyExistsException", "Replay r1 already exists.")
    finally:
        await stop_worker(worker, task)


async def put_numbered(events, bootstrap_servers, out: str, count: int) -> float:
    """PutEvents `count` shop events; returns a time before them."""
    before = time.time() - 1
    for i in range(0, count, 10):
        await call(events, "put_events", Entries=[entry("shop", n) for n in range(i, min(i + 10, count))])
    await read_all(bootstrap_servers, out, expect=count)
    return before


async def test_a_cancelled_replay_stops(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, archives={**FAST, "replay_events_per_second": 5})
    try:
        events = client(port)
        first, out1, _ = await two_rules(events, bootstrap_servers, worker)
        archive = unique("a")
        await archive_events(events, archive)
        await wait_for(lambda: f"Events-Archive-{archive}/archive" in worker.targets, message="the archive's rule")
        before = await put_numbered(events, bootstrap_servers, out1, 40)
        await asyncio.sleep(1)  # archived
        name = unique("slow")
        await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=time.time(), Destination={"Arn": BUS, "FilterArns": [first]})
        await wait_state(events, name, "RUNNING")
        assert (await call(events, "cancel_replay", ReplayName=name))["State"] == "CANCELLING"
        assert (await call(events, "describe_replay", ReplayName=name))["State"] in ("CANCELLING", "CANCELLED")
        await wait_state(events, name, "CANCELLED")
        sent = [r for r in await read_all(bootstrap_servers, out1, idle=1.5) if "replay-name" in body(r)]
        assert 0 < len(sent) < 40  # at 5 events/s, cancelled within a couple of seconds
    finally:
        await stop_worker(worker, task)


@pytest.mark.parametrize("storage", ["kafka", "s3"])
async def test_a_replay_resumes_after_its_worker_stops_with_nothing_lost(bootstrap_servers, storage, request):
    archives: dict = {**FAST, "replay_events_per_second": 10}
    if storage == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        archives.update(storage="s3", s3={"bucket": new_bucket(endpoint), "endpoint_url": endpoint,
                                          "region": "us-east-1", "flush_size": 10, "flush_interval_s": 0.5})
    worker, task, port = await start(bootstrap_servers, archives=archives)
    running = [(worker, task)]
    try:
        events = client(port)
        first, out1, _ = await two_rules(events, bootstrap_servers, worker)
        archive = unique("a")
        await archive_events(events, archive)
        await wait_for(lambda: f"Events-Archive-{archive}/archive" in worker.targets, message="the archive's rule")
        before = await put_numbered(events, bootstrap_servers, out1, 40)
        await asyncio.sleep(1)
        if storage == "s3":  # in the objects: flushed from 0.5 s quiet
            store = worker.control.store.archives[archive]
            await wait_for(lambda: asyncio.to_thread(lambda: sum(
                len(jsonl(b, k)) for k, b in lake_objects(endpoint, archives["s3"]["bucket"], store.prefix).items()
            ) == 40), message="the 40 events in the archive's objects")
        name = unique("resume")
        await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=time.time(), Destination={"Arn": BUS, "FilterArns": [first]})
        await wait_for(lambda: sum(worker.control.store.replays[name].positions.values()) >= 10, timeout=20,
                       message="a quarter of the replay to be saved")
        config = worker.config
        running.clear()
        await stop_worker(worker, task)  # mid-replay: its lease runs out, another worker takes over

        restarted, task2, info = await start_worker(config)
        running.append((restarted, task2))
        events = client(info["port"])
        await wait_state(events, name, "COMPLETED", timeout=40)
        sent = [body(r)["detail"]["n"] for r in await read_all(bootstrap_servers, out1, idle=1.5)
                if body(r).get("replay-name") == name]
        assert set(sent) == set(range(40))  # every event, some perhaps twice
        assert len(sent) < 60
    finally:
        for w, t in running:
            await stop_worker(w, t)


async def test_two_workers_run_a_replay_once(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, archives=FAST)
    running = [(worker, task)]
    try:
        other, other_task, _ = await start_worker(worker.config)  # the same group and control topic
        running.append((other, other_task))
        events = client(port)
        first, out1, _ = await two_rules(events, bootstrap_servers, worker)
        await wait_for(lambda: "first/k" in other.targets, message="the other worker to apply the rules")
        archive = unique("a")
        await archive_events(events, archive)
        await wait_for(lambda: all(f"Events-Archive-{archive}/archive" in w.targets for w in (worker, other)),
                       message="both workers to archive")
        before = await put_numbered(events, bootstrap_servers, out1, 20)
        await asyncio.sleep(1)
        name = unique("once")
        await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=time.time(), Destination={"Arn": BUS, "FilterArns": [first]})
        await wait_state(events, name, "COMPLETED")
        sent = [body(r)["detail"]["n"] for r in await read_all(bootstrap_servers, out1, idle=1.5)
                if body(r).get("replay-name") == name]
        assert sorted(sent) == list(range(20))  # each once: one worker ran it
    finally:
        for w, t in running:
            await stop_worker(w, t)


async def test_a_replayed_event_is_a_hop_and_past_routing_max_hops_is_dead_lettered(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, archives=FAST, routing={"max_hops": 2})
    try:
        events = client(port)
        bus_topic, dlq = worker.config.sources[0].topic, worker.config.dead_letter.topic
        first, out1, _ = await two_rules(events, bootstrap_servers, worker)
        archive = unique("hops")
        await archive_events(events, archive)
        await wait_for(lambda: f"Events-Archive-{archive}/archive" in worker.targets, message="the archive's rule")
        # events that already made 0, 1 and 2 hops (a chain of buses put them on this one)
        before = time.time() - 1
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
        await producer.start()
        try:
            for n in range(3):
                event = {"version": "0", "id": f"e{n}", "detail-type": "order placed", "source": "shop",
                         "account": "000000000000", "time": "2026-01-01T00:00:00Z", "region": "local",
                         "resources": [], "detail": {"n": n}}
                headers = [("eventweir-hops", str(n).encode())] if n else []
                await producer.send_and_wait(bus_topic, json.dumps(event).encode(), headers=headers)
        finally:
            await producer.stop()
        await wait_for(lambda: worker.stats.matched.get(f"Events-Archive-{archive}") == 3, message="3 events archived")
        await asyncio.sleep(1)

        name = unique("replay")
        await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=time.time(), Destination={"Arn": BUS, "FilterArns": [first]})
        await wait_state(events, name, "COMPLETED")
        # on the bus, each replayed event with one hop more; the rule it names gets them
        replayed = {body(r)["detail"]["n"]: dict(r.headers)["eventweir-hops"]
                    for r in await read_all(bootstrap_servers, bus_topic, idle=1.0) if "replay-name" in body(r)}
        assert replayed == {0: b"1", 1: b"2"}
        assert sorted(body(r)["detail"]["n"] for r in await read_all(bootstrap_servers, out1, expect=5)
                      if "replay-name" in body(r)) == [0, 1]
        # the one at routing.max_hops already: dead-lettered with the reason, not published
        [letter] = await read_all(bootstrap_servers, dlq, expect=1)
        headers = dict(letter.headers)
        assert (body(letter)["detail"]["n"], headers["eventweir-stage"], headers["eventweir-error"]) == \
            (2, b"replay", b"MaxHopsExceeded")
        assert f"routing.max_hops is 2: replay {name}".encode() in headers["eventweir-message"]
    finally:
        await stop_worker(worker, task)


async def test_an_archive_in_the_s3_lake_is_object_locked_and_replays_in_order(bootstrap_servers, s3_endpoint):
    s3 = s3_client(s3_endpoint)
    bucket = unique("archives")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    lake = {"bucket": bucket, "endpoint_url": s3_endpoint, "region": "us-east-1", "prefix": "audit/",
            "object_lock_mode": "COMPLIANCE", "flush_size": 3, "flush_interval_s": 0.5}
    worker, task, port = await start(bootstrap_servers, archives={**FAST, "storage": "s3", "s3": lake})
    try:
        events = client(port)
        bus_topic = worker.config.sources[0].topic
        first, out1, out2 = await two_rules(events, bootstrap_servers, worker)
        archive = unique("orders")
        await archive_events(events, archive, pattern={"source": ["shop"]})  # RetentionDays=1
        await wait_for(lambda: f"Events-Archive-{archive}/archive" in worker.targets, message="the archive's rule")
        prefix = worker.control.store.archives[archive].prefix
        assert prefix.startswith(f"audit/{archive}.") and worker.control.store.archives[archive].topic == ""

        before = time.time() - 2
        await call(events, "put_events", Entries=[entry("shop", n) for n in range(8)] + [entry("other", 99)])
        await read_all(bootstrap_servers, out1, expect=8)
        split = int(time.time()) + 2  # envelope times are whole seconds: the next events are at or after it
        while time.time() < split + 0.1:
            await asyncio.sleep(0.1)

        def archived() -> dict[str, list[dict]]:
            return {key: jsonl(body, key) for key, body in lake_objects(s3_endpoint, bucket, prefix).items()}

        for _ in range(60):
            if sum(len(v) for v in (await asyncio.to_thread(archived)).values()) == 8:
                break
            await asyncio.sleep(0.5)
        objects = await asyncio.to_thread(archived)
        assert sorted(e["detail"]["n"] for v in objects.values() for e in v) == list(range(8))  # not `other`
        # counted as a topic archive is: its events, and here its bytes too (the objects', as stored)
        stored = sum(map(len, (await asyncio.to_thread(lake_objects, s3_endpoint, bucket, prefix)).values()))
        described = await call(events, "describe_archive", ArchiveName=archive)
        assert (described["EventCount"], described["SizeBytes"]) == (8, stored) and stored > 0
        listed = (await call(events, "list_archives", NamePrefix=archive))["Archives"]
        assert [(a["EventCount"], a["SizeBytes"]) for a in listed] == [(8, stored)]
        await call(events, "put_events", Entries=[entry("shop", n) for n in (8, 9)])  # after the replay's range
        await read_all(bootstrap_servers, out1, expect=10)

        # every object is locked, COMPLIANCE, for RetentionDays from its write; moto refuses to delete it.
        # (Read with HeadObject: moto 5.2 has no GetObjectRetention route, so GET ?retention answers the
        # object's bytes with 200, which botocore cannot parse and reports as a 500.)
        for key in objects:
            head = await asyncio.to_thread(s3.head_object, Bucket=bucket, Key=key)
            assert head["ObjectLockMode"] == "COMPLIANCE"
            left = head["ObjectLockRetainUntilDate"].timestamp() - time.time()
            assert 86_400 - 120 < left <= 86_400
            with pytest.raises(ClientError) as refused:
                await asyncio.to_thread(s3.delete_object, Bucket=bucket, Key=key, VersionId=head["VersionId"])
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert (await call(events, "describe_archive", ArchiveName=archive))["RetentionDays"] == 1

        name = unique("replay")
        await call(events, "start_replay", ReplayName=name, EventSourceArn=f"{ARN}:archive/{archive}",
                   EventStartTime=before, EventEndTime=split, Destination={"Arn": BUS, "FilterArns": [first]})
        done = await wait_state(events, name, "COMPLETED")
        assert before <= done["EventLastReplayedTime"].timestamp() < split
        got = [body(r) for r in await read_all(bootstrap_servers, out1, expect=18)]
        assert sorted(e["detail"]["n"] for e in got if e.get("replay-name") == name) == list(range(8))
        assert len(await read_all(bootstrap_servers, out2, idle=1.0)) == 10  # not a rule the replay names
        # on the bus: each archive partition's events in the order of its objects, one hop made
        order: dict[int, list[int]] = {}
        for key in sorted(objects, key=lambda k: int(k.rsplit("+", 1)[1].split(".")[0])):
            order.setdefault(int(key.rsplit("+", 2)[1]), []).extend(e["detail"]["n"] for e in objects[key])
        bus_order: dict[int, list[int]] = {}
        for r in await read_all(bootstrap_servers, bus_topic, idle=0.5):
            if body(r).get("replay-name") == name:
                bus_order.setdefault(r.partition, []).append(body(r)["detail"]["n"])
                assert dict(r.headers)["eventweir-hops"] == b"1"
        assert bus_order == order

        # a bucket without Object Lock: CreateArchive says so, rather than an archive that cannot write
        plain = new_bucket(s3_endpoint)
        with pytest.raises(ApiError) as unusable:
            await _check_lake(ArchiveLakeSettings(bucket=plain, endpoint_url=s3_endpoint, region="us-east-1",
                                                  object_lock_mode="GOVERNANCE"))
        assert unusable.value.type == "ValidationException"
        assert f"bucket {plain!r} does not have S3 Object Lock enabled" in unusable.value.message
    finally:
        await stop_worker(worker, task)
