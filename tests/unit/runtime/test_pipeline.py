import orjson

from processors.core import Event, SourceRecord
from processors.pipeline import Pipeline
from processors.route import Route, RouteTarget, Router, parse_key_path


def records(topic, values):
    return [SourceRecord(topic, 0, i, 1732530000000, b"k", v) for i, v in enumerate(values)]


class Exploding:
    """A stage with a bug that only some events trigger."""
    name = "enrich"

    def process(self, events, failures):
        for event in events:
            if event.body.get("boom"):
                raise KeyError("missing reference")
        return events


def test_a_stage_that_raises_dead_letters_only_the_poison_events():
    router = Router([Route("all", (RouteTarget("all/out"),))])
    pipeline = Pipeline({"in": [Exploding()]}, router)
    values = [orjson.dumps({"n": i, "boom": i == 3}) for i in range(6)]
    result = pipeline.run({"in": records("in", values)})
    assert [orjson.loads(d.payload)["n"] for d in result.deliveries] == [0, 1, 2, 4, 5]
    [failure] = result.failures
    assert (failure.record.offset, failure.stage, failure.error) == (3, "enrich", "ProcessorError")
    assert "missing reference" in failure.message


def test_fan_out_serialises_once_and_keys_from_a_path():
    pattern = {"detail": {"kind": ["hot"]}}
    router = Router([
        Route("hot", (RouteTarget("hot/a", key_path=parse_key_path("$.detail.device")), RouteTarget("hot/b")), pattern),
        Route("all", (RouteTarget("all/c"),)),
    ])
    hot = Event(SourceRecord("in", 0, 0, 0, b"orig", b""), {"detail": {"kind": "hot", "device": "d1"}})
    cold = Event(SourceRecord("in", 0, 1, 0, b"orig", b""), {"detail": {"kind": "cold", "device": "d2"}})
    matched = {}
    out = router.route([hot, cold], [], matched)
    by_target = {}
    for d in out:
        by_target.setdefault(d.target, []).append((d.record.offset, d.key))
    # each target gets its events in order, keyed from the path or with the source key
    assert by_target == {"all/c": [(0, b"orig"), (1, b"orig")], "hot/a": [(0, b"d1")], "hot/b": [(0, b"orig")]}
    hot = [d for d in out if d.target.startswith("hot/")]
    assert hot[0].payload is hot[1].payload  # one serialisation for every target of an event
    assert matched == {"all": 2, "hot": 1}
