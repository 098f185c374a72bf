"""The benchmark pipeline built from eventweir's own parts, for both eventweir contenders."""
from __future__ import annotations

import spec  # noqa: F401  (puts the repository on sys.path)

from processors.core import Failure
from processors.decode import Decoder
from processors.enrich import ReferenceJoin, ReferenceTable
from processors.pipeline import Pipeline
from streams.config import parse_config
from streams.runtime.enrichment import build_enrichment
from streams.runtime.topology import build_router

KEY_PATHS = {"iot": "device_id", "click": "user_id", "cdc": "after.customer_id"}


class RequiredFields:
    stage = "validate"
    appends_json = True  # bodies are only read (see processors.core.Event.added)

    def __init__(self, fields):
        self.fields = tuple(fields)

    def process(self, events, failures):
        out = []
        fields = self.fields
        for event in events:
            body = event.body
            for name in fields:
                if name not in body:
                    failures.append(Failure(event.record, self.stage, "missing_field",
                                            f"required field {name!r} is missing"))
                    break
            else:
                out.append(event)
        return out


def windows_stage(kind: str) -> dict:
    """Pipeline 2's stateful step as a user configures it: a 1-minute tumbling count per key over the
    record timestamp, its state in a changelog topic, each closed window emitted as a result event."""
    return {"type": "windows", "name": "count1m", "window": "tumbling", "size": f"{spec.WINDOW_MS}ms",
            "key": "$." + KEY_PATHS[kind], "time": "kafka", "aggregations": {"count": {"op": "count"}}}


def bench_config(args, *, max_batch: int = 5000):
    outs = spec.out_topics(args.out)
    stateful = getattr(args, "stateful", False)
    window_rules = [{"name": "window-results", "EventPattern": {"detail-type": ["Window Result"]},
                     "targets": [{"id": "out", "type": "kafka", "topic": spec.windows_topic(args.out)}]}]
    return parse_config({
        "kafka": {"bootstrap_servers": args.bootstrap, "group_id": args.group},
        "consumer": {"max_batch_records": max_batch, "commit_interval_ms": 50, "fetch_timeout_ms": 20},
        "producer": {"linger_ms": 5},
        "dead_letter": {"topic": f"{args.out}-dlq"},
        "sources": [{"topic": t, "enrich": [windows_stage(kind)] if stateful else []}
                    for kind, t in spec.topics(args.prefix).items()],
        "rules": [{"name": name, "EventPattern": pattern, "targets": [{"id": "out", "type": "kafka", "topic": outs[kind]}]}
                  for name, kind, pattern, _ in spec.RULES] + (window_rules if stateful else []),
    }, environ={})


def bench_pipeline(config, stateful: bool, prefix: str) -> Pipeline:
    table = ReferenceTable("ref", spec.reference_rows())
    stages, decoders = {}, {}
    for index, (kind, topic) in enumerate(spec.topics(prefix).items()):
        chain = [RequiredFields(spec.REQUIRED[kind]),
                 ReferenceJoin(table, KEY_PATHS[kind], fields=list(spec.ENRICH_FIELDS), into="ref",
                               on_missing="default", default={f: None for f in spec.ENRICH_FIELDS})]
        if stateful:  # the stages of sources[index].enrich, built as the worker builds them
            chain += build_enrichment(config, index, config.sources[index].enrich, {})
        stages[topic] = chain
        decoders[topic] = Decoder()
    return Pipeline(stages, build_router(config), decoders)


class TimedPipeline:
    """Starts the clock at the first batch: group join and start-up are not timed."""

    def __init__(self, pipeline: Pipeline, clock):
        self.pipeline, self.clock = pipeline, clock

    collects_plain = True  # as Pipeline: the worker takes plain rules' records as they are

    def __getattr__(self, name):
        # the rest is the pipeline's: the worker finds its stateful stages (`chains`) there and
        # gives them their changelog topics
        return getattr(self.pipeline, name)

    def run(self, by_topic, plain=False):
        self.clock.tick()
        return self.pipeline.run(by_topic, plain)
