"""Schema discovery on the real broker: a worker infers and versions the schemas of a bus's events
on the registry topic, `eventweir schemas discovered` exports them in both of EventBridge's
formats, and two workers discovering at once converge on one chain of versions."""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import jsonschema
import pytest

from processors.discovery import Discovery
from streams.cli import main as cli
from streams.config import parse_config
from streams.kafka.discovered import read_registry
from streams.runtime.discovery import SchemaDiscovery
from tests.integration.kafka_helpers import create_topics, produce, unique, wait_for
from tests.integration.test_rules_targets import config_for, start_worker, stop_worker

pytestmark = pytest.mark.broker


def envelope(source: str, detail_type: str, detail: dict) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
            "account": "000000000000", "time": "2026-12-06T10:00:00Z", "region": "local", "resources": [],
            "detail": detail}


async def registry_of(bootstrap: str, topic: str) -> dict:
    return await read_registry({"bootstrap_servers": bootstrap}, topic)


async def wait_for_registry(bootstrap: str, topic: str, versions: dict) -> dict:
    """Poll the registry topic until each type has the number of versions given."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        entries = await registry_of(bootstrap, topic)
        if {k: len(v) for k, v in entries.items()} == versions:
            return entries
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"registry {topic}: {({k: len(v) for k, v in entries.items()})}, expected {versions}")
        await asyncio.sleep(0.3)


async def test_a_bus_with_discovery_versions_its_types_and_the_cli_exports_them(bootstrap_servers, tmp_path):
    src, bus_topic, dlq, group, registry = unique("main"), unique("orders-bus"), unique("dlq"), unique("g"), unique("schemas")
    await create_topics(bootstrap_servers, src, bus_topic, dlq)
    config = config_for(bootstrap_servers, src, dlq, group, rules=[],
                        sources=[{"topic": src, "kind": "envelope"}],
                        buses=[{"name": "orders", "topic": bus_topic,
                                "discovery": {"enabled": True, "topic": registry, "flush_interval_s": 0.2,
                                              "sample_first": 1000}}])  # every event: the test sees each shape
    worker, task, _ = await start_worker(config)
    orders = [envelope("shop", "Order Placed", {"id": i, "total": 10 * i, "lines": [{"sku": "a", "qty": 1}]})
              for i in range(20)]
    readings = [envelope("iot.station", "Reading", {"station": "s1", "temp": 21.5}) for _ in range(5)]
    # the main bus has no discovery: its events are not filed
    await produce(bootstrap_servers, src, [envelope("elsewhere", "Not Discovered", {"x": 1})])
    await produce(bootstrap_servers, bus_topic, orders + readings)
    first = await wait_for_registry(bootstrap_servers, registry, {("shop", "Order Placed"): 1, ("iot.station", "Reading"): 1})
    order_v1 = first[("shop", "Order Placed")][0]["schema"]["properties"]["detail"]
    assert order_v1["required"] == ["id", "lines", "total"] and order_v1["properties"]["total"] == {"type": "integer"}

    # later, a new optional field and a total with cents: one new version of that type only
    later = [envelope("shop", "Order Placed", {"id": 100 + i, "total": 10.5, "lines": [], "coupon": "WINTER"})
             for i in range(5)]
    await produce(bootstrap_servers, bus_topic, later + readings)
    entries = await wait_for_registry(bootstrap_servers, registry,
                                      {("shop", "Order Placed"): 2, ("iot.station", "Reading"): 1})
    v2 = entries[("shop", "Order Placed")][-1]
    assert v2["version"] == 2
    assert v2["schema"]["properties"]["detail"]["properties"]["total"] == {"type": "number"}
    assert v2["schema"]["properties"]["detail"]["properties"]["coupon"] == {"type": "string"}
    assert "coupon" not in v2["schema"]["properties"]["detail"]["required"]  # optional: the first orders had none
    await wait_for(lambda: worker.stats.consumed >= 36, message="every event consumed")
    await stop_worker(worker, task)

    # a restarted worker reads the same registry: the same shapes again make no new version
    worker, task, _ = await start_worker(config)
    await produce(bootstrap_servers, bus_topic, orders[:3] + later[:3] + readings[:1])
    await wait_for(lambda: worker.discovery.registries[registry].records.keys() == entries.keys(), message="registry")
    await wait_for(lambda: worker.stats.consumed >= 7, message="the new events consumed")
    assert await worker.discovery.flush() == 0
    await stop_worker(worker, task)
    assert await registry_of(bootstrap_servers, registry) == entries

    # the CLI lists them, and exports files that take the events (JSON Schema) or parse (OpenAPI 3)
    listed = await asyncio.to_thread(_run_cli, ["--bootstrap-servers", bootstrap_servers, "--topic", registry])
    assert "shop / Order Placed: v1, v2" in listed and "iot.station / Reading: v1" in listed
    out = tmp_path / "jsonschema"
    await asyncio.to_thread(_run_cli, ["--bootstrap-servers", bootstrap_servers, "--topic", registry,
                                       "--export", str(out)])
    assert sorted(os.listdir(out)) == ["iot.station@Reading.json", "shop@OrderPlaced.json"]
    order_schema = json.loads((out / "shop@OrderPlaced.json").read_text())
    assert order_schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert order_schema["x-amazon-events-detail-type"] == "Order Placed"
    jsonschema.Draft4Validator.check_schema(order_schema)
    for event in orders + later:
        jsonschema.Draft4Validator(order_schema).validate(event)
    reading_schema = json.loads((out / "iot.station@Reading.json").read_text())
    with pytest.raises(jsonschema.ValidationError):  # a Reading is no order
        jsonschema.Draft4Validator(order_schema).validate(readings[0])
    for event in readings:
        jsonschema.Draft4Validator(reading_schema).validate(event)

    out = tmp_path / "openapi"
    await asyncio.to_thread(_run_cli, ["--bootstrap-servers", bootstrap_servers, "--topic", registry,
                                       "--export", str(out), "--format", "openapi3"])
    for name in ("iot.station@Reading.json", "shop@OrderPlaced.json"):
        document = json.loads((out / name).read_text())
        _check_openapi(document)
    order = json.loads((out / "shop@OrderPlaced.json").read_text())["components"]["schemas"]
    assert order["AWSEvent"]["properties"]["detail"] == {"$ref": "#/components/schemas/OrderPlaced"}
    assert order["OrderPlaced"]["properties"]["total"] == {"type": "number"}


def _run_cli(args: list[str]) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli(["schemas", "discovered", *args]) == 0
    return buffer.getvalue()


def _check_openapi(document: dict) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:  # the dev extra has it; without it, the structure EventBridge's export has
        assert document["openapi"].startswith("3.0") and document["paths"] == {}
        assert document["components"]["schemas"]["AWSEvent"]["type"] == "object"
        return
    validate(document)


async def test_two_workers_discovering_at_once_converge_on_one_chain_of_versions(bootstrap_servers):
    registry = unique("schemas")
    config = parse_config({"kafka": {"bootstrap_servers": bootstrap_servers}, "sources": [{"topic": "unused"}],
                           "bus": {"discovery": {"enabled": True, "topic": registry}}}, environ={})
    stages = [Discovery(), Discovery()]
    workers = [SchemaDiscovery(config, {"default": (stage, config.bus.discovery)}) for stage in stages]
    for w in workers:
        await w.start()
    try:
        stages[0].observe(envelope("shop", "Order Placed", {"id": 1}))
        await workers[0].flush()
        await wait_for(lambda: ("shop", "Order Placed") in workers[1].registries[registry].records, message="v1 seen")
        # each saw a field the other did not, and both write their version at once
        stages[0].observe(envelope("shop", "Order Placed", {"id": 2, "coupon": "A"}))
        stages[1].observe(envelope("shop", "Order Placed", {"id": 3, "gift": True}))
        await asyncio.gather(*(w.flush() for w in workers))

        def settled():
            views = [w.registries[registry].versions(("shop", "Order Placed")) for w in workers]
            detail = views[0][-1]["schema"]["properties"]["detail"]["properties"] if views[0] else {}
            return views[0] == views[1] and {"coupon", "gift"} <= set(detail)

        async def flush_until_settled():  # what each worker's loop does: flush until nothing is left uncovered
            while not settled():
                for w in workers:
                    await w.flush()
                await asyncio.sleep(0.1)

        await asyncio.wait_for(flush_until_settled(), 20)
    finally:
        for w in workers:
            await w.close()
    versions = (await registry_of(bootstrap_servers, registry))[("shop", "Order Placed")]
    numbers = [v["version"] for v in versions]
    assert numbers == [1, 2, 3]  # v1, the two v2 written at once (the later kept), then their join
    detail = versions[-1]["schema"]["properties"]["detail"]
    assert detail["required"] == ["id"] and {"coupon", "gift", "id"} == set(detail["properties"])
    for detail in ({"id": 2, "coupon": "A"}, {"id": 3, "gift": True}):
        event = envelope("shop", "Order Placed", detail)
        jsonschema.Draft202012Validator(versions[-1]["schema"]).validate(event)


async def test_a_full_registry_takes_no_new_type_even_from_a_fresh_worker(bootstrap_servers):
    registry = unique("schemas")
    config = parse_config({"kafka": {"bootstrap_servers": bootstrap_servers}, "sources": [{"topic": "unused"}],
                           "bus": {"discovery": {"enabled": True, "topic": registry, "max_types": 1}}}, environ={})
    first = SchemaDiscovery(config, {"default": (config.bus.discovery.stage(), config.bus.discovery)})
    await first.start()
    first.groups[registry][0][0].observe(envelope("shop", "Order Placed", {"id": 1}))
    assert await first.flush() == 1
    await first.close()
    # a restarted worker has seen no type yet, but the registry already holds max_types
    stage = config.bus.discovery.stage()
    second = SchemaDiscovery(config, {"default": (stage, config.bus.discovery)})
    await second.start()
    try:
        stage.observe(envelope("order-id-42", "Order Placed", {"id": 1}))
        assert await second.flush() == 0
        stage.observe(envelope("order-id-42", "Order Placed", {"id": 2}))
        assert stage.overflow == 1 and not stage.observed
    finally:
        await second.close()
    assert list(await registry_of(bootstrap_servers, registry)) == [("shop", "Order Placed")]
