"""Scripts written for AWS, run unchanged against a running worker: target ARNs of SQS, Kinesis and
Lambda mapped by api.arn_map, ListRuleNamesByTarget, tags, and paging, with boto3 (its paginators
included) and with the AWS CLI as a subprocess; effects checked on the topics of a real broker."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.runtime.buses import all_buses
from tests.integration.http_endpoint import Endpoint
from tests.integration.kafka_helpers import create_topics, read_all, unique, wait_for
from tests.integration.test_api_destinations import SECRETS_KEY
from tests.integration.test_eventbridge_api import KEY, SECRET, call, client, entry, error_of
from tests.integration.test_rules_targets import config_for, start_worker, stop_worker
from tests.integration.test_s3_sink import jsonl, lake_objects, new_bucket

pytestmark = pytest.mark.broker
ARN = "arn:aws:events:local:000000000000"
SQS = "arn:aws:sqs:us-east-1:123456789012"


async def start(bootstrap_servers, arn_map: list[dict], secrets_key: str | None = None, **extra):
    bus, dlq, control, group = unique("bus"), unique("dlq"), unique("rules"), unique("g")
    await create_topics(bootstrap_servers, bus, dlq)
    config = config_for(
        bootstrap_servers, bus, dlq, group, rules=extra.pop("rules", []),
        sources=[{"topic": bus, "kind": "envelope"}],
        routing={"control_topic": control, "retry_base_delay_ms": 5, "retry_max_delay_ms": 20,
                 "http_allow_networks": ["127.0.0.0/8"], "secrets_key": secrets_key},
        api={"access_keys": {KEY: SECRET}, "signing_regions": ["us-east-1"], "arn_map": arn_map}, **extra,
    )
    worker, task, info = await start_worker(config)
    return worker, task, info["port"]


async def test_targets_made_with_aws_arns_deliver_where_api_arn_map_says(bootstrap_servers, s3_endpoint):
    orders, clicks, bucket = unique("orders"), unique("clicks"), new_bucket(s3_endpoint)
    await create_topics(bootstrap_servers, orders, clicks)
    async with Endpoint() as function:
        worker, task, port = await start(bootstrap_servers, [
            {"arn": "arn:aws:sqs:*:*:orders", "target": {"type": "kafka", "topic": orders}},
            {"arn": "arn:aws:kinesis:*:*:stream/*", "target": {"type": "kafka", "topic": "{name}"}},
            {"arn": "arn:aws:lambda:*:*:function:notify", "target": {"type": "http", "url": function.url}},
            {"arn": "arn:aws:firehose:*:*:deliverystream/lake", "target": {
                "type": "s3", "bucket": bucket, "endpoint_url": s3_endpoint, "region": "us-east-1", "flush_size": 2,
                "flush_interval_s": 1}},
        ])
        try:
            events = client(port)
            kinesis = f"arn:aws:kinesis:us-east-1:123456789012:stream/{clicks}"
            lambda_arn = "arn:aws:lambda:us-east-1:123456789012:function:notify"
            firehose = "arn:aws:firehose:us-east-1:123456789012:deliverystream/lake"
            await call(events, "put_rule", Name="orders", EventPattern=json.dumps({"source": ["shop"]}))
            await call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "queue", "Arn": f"{SQS}:orders",
                 "InputTransformer": {"InputPathsMap": {"n": "$.detail.n"}, "InputTemplate": '{"order": <n>}'}},
                {"Id": "stream", "Arn": kinesis, "KinesisParameters": {"PartitionKeyPath": "$.detail.n"}},
                {"Id": "fn", "Arn": lambda_arn}, {"Id": "lake", "Arn": firehose}])
            await wait_for(lambda: {"orders/queue", "orders/stream", "orders/fn", "orders/lake"} <= set(worker.targets),
                           message="the worker to apply the rule")

            # what the script sent is what it reads back
            listed = (await call(events, "list_targets_by_rule", Rule="orders"))["Targets"]
            assert [(t["Id"], t["Arn"]) for t in listed] == [("queue", f"{SQS}:orders"), ("stream", kinesis),
                                                              ("fn", lambda_arn), ("lake", firehose)]
            assert listed[0]["InputTransformer"]["InputTemplate"] == '{"order": <n>}'

            await call(events, "put_events", Entries=[entry("shop", 1), entry("shop", 2)])
            assert sorted(json.loads(r.value)["order"] for r in await read_all(bootstrap_servers, orders, expect=2)) \
                == [1, 2]
            records = await read_all(bootstrap_servers, clicks, expect=2)
            assert sorted((r.key, json.loads(r.value)["detail"]["n"]) for r in records) == [(b"1", 1), (b"2", 2)]
            await wait_for(lambda: len(function.received) == 2, message="the function's endpoint to get both")

            def lake() -> list[int]:
                return sorted(r["detail"]["n"] for key, body in lake_objects(s3_endpoint, bucket).items()
                              for r in jsonl(body, key))

            for _ in range(40):  # read off the event loop, which the worker shares
                if await asyncio.to_thread(lake) == [1, 2]:
                    break
                await asyncio.sleep(0.5)
            assert await asyncio.to_thread(lake) == [1, 2]  # the delivery stream's bucket holds both

            # an ARN with no row: refused for the whole call, naming the row to add
            code, message = await error_of(call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "other", "Arn": f"{SQS}:refunds"}]))
            assert code == "ValidationException"
            assert message == (f"Target Arn '{SQS}:refunds' is not mapped to an eventweir target: add it to api.arn_map "
                               f"in the config, e.g. {{arn: '{SQS}:refunds', target: {{type: kafka, topic: <topic>}}}}.")
            code, message = await error_of(call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "fh", "Arn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/audit"}]))
            assert "target: {type: s3, bucket: <bucket>, ...}" in message
            assert [t["Id"] for t in (await call(events, "list_targets_by_rule", Rule="orders"))["Targets"]] == \
                ["queue", "stream", "fn", "lake"]
        finally:
            await stop_worker(worker, task)


async def test_lists_page_as_on_aws_and_boto3_paginators_walk_them(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, [{"arn": "arn:aws:sqs:*:*:*", "target": {"type": "log"}}],
                                     secrets_key=SECRETS_KEY)
    try:
        events = client(port)
        for i in range(5):
            await call(events, "put_rule", Name=f"r{i}", EventPattern=json.dumps({"source": ["shop"]}))
            await call(events, "put_targets", Rule=f"r{i}", Targets=[
                {"Id": "q", "Arn": f"{SQS}:orders" if i % 2 == 0 else f"{SQS}:refunds"}])
        await call(events, "put_targets", Rule="r0", Targets=[{"Id": f"t{j}", "Arn": f"{SQS}:t{j}"} for j in range(4)])
        for i in range(3):
            await call(events, "create_event_bus", Name=unique(f"b{i}"))

        first = await call(events, "list_rule_names_by_target", TargetArn=f"{SQS}:orders", Limit=2)
        assert first["RuleNames"] == ["r0", "r2"] and first["NextToken"]
        rest = await call(events, "list_rule_names_by_target", TargetArn=f"{SQS}:orders", NextToken=first["NextToken"])
        assert rest["RuleNames"] == ["r4"] and "NextToken" not in rest

        def walk(operation: str, member: str, **params) -> list[list]:
            pages = events.get_paginator(operation).paginate(**params, PaginationConfig={"PageSize": 2})
            return [page[member] for page in pages]

        pages = await asyncio.to_thread(walk, "list_rule_names_by_target", "RuleNames", TargetArn=f"{SQS}:refunds")
        assert pages == [["r1", "r3"]]
        pages = await asyncio.to_thread(walk, "list_rules", "Rules")
        assert [[r["Name"] for r in p] for p in pages] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
        pages = await asyncio.to_thread(walk, "list_targets_by_rule", "Targets", Rule="r0")
        assert [[t["Id"] for t in p] for p in pages] == [["q", "t0"], ["t1", "t2"], ["t3"]]
        # no paginator in boto3 for these: a script's own loop on NextToken
        page = await call(events, "list_event_buses", Limit=3)
        rest = await call(events, "list_event_buses", Limit=3, NextToken=page["NextToken"])
        assert (len(page["EventBuses"]), len(rest["EventBuses"]), "NextToken" in rest) == (3, 1, False)
        arn = ""
        for i in range(3):
            arn = (await call(events, "create_connection", Name=f"c{i}", AuthorizationType="API_KEY", AuthParameters={
                "ApiKeyAuthParameters": {"ApiKeyName": "x-key", "ApiKeyValue": "secret"}}))["ConnectionArn"]
            await call(events, "create_api_destination", Name=f"d{i}", ConnectionArn=arn, HttpMethod="POST",
                       InvocationEndpoint="https://api.example.com/")
        for operation, member in (("list_connections", "Connections"), ("list_api_destinations", "ApiDestinations")):
            page = await call(events, operation, Limit=2)
            rest = await call(events, operation, Limit=2, NextToken=page["NextToken"])
            assert [x["Name"][1:] for x in page[member] + rest[member]] == ["0", "1", "2"] and "NextToken" not in rest
        assert await error_of(call(events, "list_rules", NextToken="nonsense")) == \
            ("ValidationException", "The NextToken is not valid.")
    finally:
        await stop_worker(worker, task)


async def test_tags_on_rules_and_buses_are_kept_with_them(bootstrap_servers):
    worker, task, port = await start(bootstrap_servers, [], rules=[
        {"name": "from-config", "EventPattern": {"source": ["x"]}, "tags": {"team": "core"}}],
        bus={"tags": {"env": "prod"}})
    try:
        events = client(port)
        bus = unique("orders")
        bus_arn = (await call(events, "create_event_bus", Name=bus, Tags=[{"Key": "env", "Value": "prod"}]))["EventBusArn"]
        rule_arn = (await call(events, "put_rule", Name="r", EventBusName=bus, EventPattern=json.dumps({"source": ["a"]}),
                               Tags=[{"Key": "tag1", "Value": "value1"}]))["RuleArn"]
        assert rule_arn == f"{ARN}:rule/{bus}/r"
        await call(events, "tag_resource", ResourceARN=rule_arn, Tags=[{"Key": "tag2", "Value": "value2"}])
        assert (await call(events, "list_tags_for_resource", ResourceARN=rule_arn))["Tags"] == [
            {"Key": "tag1", "Value": "value1"}, {"Key": "tag2", "Value": "value2"}]
        await call(events, "untag_resource", ResourceARN=rule_arn, TagKeys=["tag2", "never-set"])
        assert (await call(events, "list_tags_for_resource", ResourceARN=rule_arn))["Tags"] == [
            {"Key": "tag1", "Value": "value1"}]
        # PutRule again (a script re-run) keeps the rule's tags
        await call(events, "put_rule", Name="r", EventBusName=bus, EventPattern=json.dumps({"source": ["b"]}))
        assert (await call(events, "list_tags_for_resource", ResourceARN=rule_arn))["Tags"] == [
            {"Key": "tag1", "Value": "value1"}]

        await call(events, "tag_resource", ResourceARN=bus_arn, Tags=[{"Key": "env", "Value": "dev"},
                                                                       {"Key": "owner", "Value": "shop"}])
        assert (await call(events, "list_tags_for_resource", ResourceARN=bus_arn))["Tags"] == [
            {"Key": "env", "Value": "dev"}, {"Key": "owner", "Value": "shop"}]

        # stored on the control topic: a second worker reading it sees them
        control = worker.control.store
        assert control.rules["r"].tags == {"tag1": "value1"} and control.buses[bus].settings.tags["owner"] == "shop"

        # AWS's errors for what does not exist; the config file's resources are changed there
        assert await error_of(call(events, "list_tags_for_resource", ResourceARN=f"{ARN}:rule/nope")) == \
            ("ResourceNotFoundException", "Rule nope does not exist on EventBus default.")
        assert await error_of(call(events, "tag_resource", ResourceARN=f"{ARN}:event-bus/nope",
                                        Tags=[{"Key": "a", "Value": "b"}])) == \
            ("ResourceNotFoundException", "Event bus nope does not exist.")
        assert await error_of(call(events, "tag_resource", ResourceARN=rule_arn, Tags=[{"Key": "k" * 129, "Value": ""}])) \
            == ("ValidationException", f"1 validation error detected: Value '{'k' * 129}' at 'tags.1.member.key' failed to "
                "satisfy constraint: Member must have length less than or equal to 128")
        assert (await call(events, "list_tags_for_resource", ResourceARN=f"{ARN}:rule/from-config"))["Tags"] == [
            {"Key": "team", "Value": "core"}]
        assert (await call(events, "list_tags_for_resource", ResourceARN=f"{ARN}:event-bus/default"))["Tags"] == [
            {"Key": "env", "Value": "prod"}]
        assert await error_of(call(events, "tag_resource", ResourceARN=f"{ARN}:event-bus/default",
                                   Tags=[{"Key": "a", "Value": "b"}])) == \
            ("ValidationException", "Event bus default is defined in the config file; change it there.")
        code, _ = await error_of(call(events, "tag_resource", ResourceARN=f"{ARN}:rule/from-config",
                                      Tags=[{"Key": "a", "Value": "b"}]))
        assert code == "ManagedRuleException"

        # deleting a rule deletes its tags: made again, it has none
        await call(events, "delete_rule", Name="r", EventBusName=bus)
        await call(events, "put_rule", Name="r", EventBusName=bus, EventPattern=json.dumps({"source": ["a"]}))
        assert (await call(events, "list_tags_for_resource", ResourceARN=rule_arn))["Tags"] == []
    finally:
        await stop_worker(worker, task)


async def test_a_dead_letter_queue_arn_maps_through_api_arn_map_onto_a_topic(bootstrap_servers):
    failed = unique("orders-dlq")
    await create_topics(bootstrap_servers, failed)
    async with Endpoint(status=400) as function:  # refuses every event: 400 is not retried
        worker, task, port = await start(bootstrap_servers, [
            {"arn": "arn:aws:sqs:*:*:orders-dlq", "target": {"type": "kafka", "topic": failed}},
            {"arn": "arn:aws:lambda:*:*:function:notify", "target": {"type": "http", "url": function.url}}])
        try:
            events = client(port)
            await call(events, "put_rule", Name="orders", EventPattern=json.dumps({"source": ["shop"]}))
            await call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "fn", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:notify",
                 "DeadLetterConfig": {"Arn": f"{SQS}:orders-dlq"}}])
            await wait_for(lambda: "orders/fn" in worker.targets, message="the worker to apply the rule")
            listed = (await call(events, "list_targets_by_rule", Rule="orders"))["Targets"]
            assert listed[0]["DeadLetterConfig"] == {"Arn": f"{SQS}:orders-dlq"}  # what the script sent

            await call(events, "put_events", Entries=[entry("shop", 7)])
            [letter] = await read_all(bootstrap_servers, failed, expect=1)
            assert json.loads(letter.value)["detail"] == {"n": 7}
            assert (dict(letter.headers)["eventweir-target"], dict(letter.headers)["eventweir-error"]) == \
                (b"orders/fn", b"HttpStatus400")

            # a queue with no row: refused, naming the row to add; a row that is not a topic: refused, saying so
            code, message = await error_of(call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "fn", "Arn": "kafka://x", "DeadLetterConfig": {"Arn": f"{SQS}:refunds-dlq"}}]))
            assert (code, message) == ("ValidationException", (
                f"DeadLetterConfig Arn '{SQS}:refunds-dlq' is not mapped to an eventweir target: add it to api.arn_map "
                f"in the config, e.g. {{arn: '{SQS}:refunds-dlq', target: {{type: kafka, topic: <topic>}}}}."))
            code, message = await error_of(call(events, "put_targets", Rule="orders", Targets=[
                {"Id": "fn", "Arn": "kafka://x",
                 "DeadLetterConfig": {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:notify"}}]))
            assert code == "ValidationException" and "a dead-letter queue is a Kafka topic" in message
        finally:
            await stop_worker(worker, task)


# a team's script from AWS, as it runs there: only the endpoint is new
SCRIPT = r"""
set -euo pipefail
ev() { aws events --endpoint-url "$ENDPOINT" "$@"; }
ev create-event-bus --name "$BUS" --tags Key=team,Value=shop > "$OUT/bus.json"
RULE_ARN=$(ev put-rule --name orders-to-queue --event-bus-name "$BUS" \
    --event-pattern '{"source": ["shop"], "detail-type": ["order placed"]}' --query RuleArn --output text)
ev put-targets --rule orders-to-queue --event-bus-name "$BUS" --targets '[{
    "Id": "orders-queue", "Arn": "arn:aws:sqs:us-east-1:123456789012:orders",
    "InputTransformer": {"InputPathsMap": {"id": "$.detail.id"}, "InputTemplate": "{\"order\": <id>}"}}]'
ev put-events --entries '[{"Source": "shop", "DetailType": "order placed", "Detail": "{\"id\": \"o-1\"}",
    "EventBusName": "'"$BUS"'"}, {"Source": "shop", "DetailType": "order paid", "Detail": "{\"id\": \"o-2\"}",
    "EventBusName": "'"$BUS"'"}]' > "$OUT/put.json"
ev list-rule-names-by-target --target-arn arn:aws:sqs:us-east-1:123456789012:orders --event-bus-name "$BUS" \
    > "$OUT/names.json"
ev tag-resource --resource-arn "$RULE_ARN" --tags Key=cost-center,Value=42
ev list-tags-for-resource --resource-arn "$RULE_ARN" > "$OUT/tags.json"

# recovery after a bad deploy: archive the bus, replay a time range to one rule, wait for it
ev put-rule --name orders-audit --event-bus-name "$BUS" --event-pattern '{"source": ["shop"]}' > /dev/null
ev put-targets --rule orders-audit --event-bus-name "$BUS" \
    --targets '[{"Id": "audit", "Arn": "arn:aws:sqs:us-east-1:123456789012:audit"}]' > /dev/null
BUS_ARN=$(ev describe-event-bus --name "$BUS" --query Arn --output text)
# (the pattern names the order to replay: under load the worker may archive o-1 and o-2 after this too, and an
# archived event's time on Kafka is when it was archived)
ARCHIVE_ARN=$(ev create-archive --archive-name "$BUS-archive" --event-source-arn "$BUS_ARN" --retention-days 7 \
    --event-pattern '{"source": ["shop"], "detail": {"id": ["o-3"]}}' --query ArchiveArn --output text)
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 3  # the archive's rule reaches the worker
ev put-events --entries '[{"Source": "shop", "DetailType": "order placed", "Detail": "{\"id\": \"o-3\"}",
    "EventBusName": "'"$BUS"'"}]' > /dev/null
sleep 2
END=$(date -u -d '+2 seconds' +%Y-%m-%dT%H:%M:%SZ)
sleep 3
ev start-replay --replay-name "$BUS-replay" --event-source-arn "$ARCHIVE_ARN" --event-start-time "$START" \
    --event-end-time "$END" --destination "{\"Arn\": \"$BUS_ARN\", \"FilterArns\": [\"$RULE_ARN\"]}" > /dev/null
for _ in $(seq 60); do
    STATE=$(ev describe-replay --replay-name "$BUS-replay" --query State --output text)
    [ "$STATE" = COMPLETED ] && break
    [ "$STATE" = FAILED ] && exit 3
    sleep 1
done
ev describe-replay --replay-name "$BUS-replay" > "$OUT/replay.json"
"""


@pytest.mark.skipif(not (Path(sys.executable).parent / "aws").exists(), reason="the AWS CLI (awscli, the dev extra)")
async def test_an_aws_cli_script_runs_unchanged_against_a_worker(bootstrap_servers, tmp_path):
    orders, bus = unique("orders"), unique("shop")
    await create_topics(bootstrap_servers, orders)
    audit = unique("audit")
    await create_topics(bootstrap_servers, audit)
    worker, task, port = await start(bootstrap_servers, [
        {"arn": "arn:aws:sqs:*:*:orders", "target": {"type": "kafka", "topic": orders}},
        {"arn": "arn:aws:sqs:*:*:audit", "target": {"type": "kafka", "topic": audit}}],
        archives={"replay_start_delay_s": 0.3, "replay_progress_interval_s": 0.2})
    try:
        env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(tmp_path),
               "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_DEFAULT_OUTPUT": "json",
               "ENDPOINT": f"http://127.0.0.1:{port}", "BUS": bus, "OUT": str(tmp_path)}
        done = await asyncio.to_thread(subprocess.run, ["bash", "-c", SCRIPT], env=env, capture_output=True,
                                       text=True, timeout=120)
        assert done.returncode == 0, done.stderr

        def out(name: str) -> dict:
            return json.loads((tmp_path / f"{name}.json").read_text())

        assert out("bus")["EventBusArn"] == f"{ARN}:event-bus/{bus}"
        assert out("put")["FailedEntryCount"] == 0
        assert out("names")["RuleNames"] == ["orders-to-queue"]
        assert out("tags")["Tags"] == [{"Key": "cost-center", "Value": "42"}]
        # the replay: COMPLETED; the archived event came back with replay-name to the rule it names only
        replay = out("replay")
        assert replay["State"] == "COMPLETED" and replay["Destination"]["FilterArns"] == [
            f"{ARN}:rule/{bus}/orders-to-queue"]
        bus_topic = all_buses(worker.config, worker.control.store.buses)[bus].topic
        replayed = [json.loads(r.value) for r in await read_all(bootstrap_servers, bus_topic, idle=1)
                    if b"replay-name" in r.value]
        assert [(e["replay-name"], e["detail"]["id"]) for e in replayed] == [(f"{bus}-replay", "o-3")]
        # the queue's topic: the matching events, transformed (o-2 matches no pattern), and o-3 again from
        # the replay (the template drops replay-name)
        assert sorted(json.loads(r.value)["order"] for r in await read_all(bootstrap_servers, orders, idle=1)) == \
            ["o-1", "o-3", "o-3"]
        audited = [json.loads(r.value) for r in await read_all(bootstrap_servers, audit, idle=1)]
        # live only (o-1 and o-2 too, if the worker read them after this rule came): the replay did not name it
        assert [e["detail"]["id"] for e in audited].count("o-3") == 1
        assert all("replay-name" not in e for e in audited)
    finally:
        await stop_worker(worker, task)
