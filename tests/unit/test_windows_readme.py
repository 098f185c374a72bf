"""The README's windows examples: the YAML is a config the worker runs, the Python embeds a reducer."""
from pathlib import Path

import orjson
import pytest
import yaml

from processors.core import SourceRecord
from streams.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("### Windows: aggregations over event time\n", 1)[1].split("\n### ", 1)[0]


def block(kind: str) -> str:
    return SECTION.split(f"```{kind}\n", 1)[1].split("```", 1)[0]


def readings(temps_by_minute):
    """IoT telemetry from greenhouse-7: (minute, second, temperature) at 2024-05-01T10:mm:ss."""
    return [SourceRecord("iot.telemetry", 0, i, 0, b"greenhouse-7", orjson.dumps({
        "device_id": "greenhouse-7", "timestamp": f"2024-05-01T10:{m:02d}:{s:02d}Z",
        "measurements": {"temperature": t}})) for i, (m, s, t) in enumerate(temps_by_minute)]


def test_the_readme_windows_example_emits_mean_temperatures_and_routes_late_readings():
    config = parse_config({"kafka": {"bootstrap_servers": "kafka:9092"}, **yaml.safe_load(block("yaml"))}, environ={})
    from streams.runtime.topology import build_pipeline

    result = build_pipeline(config).run({"iot.telemetry": readings([
        (1, 0, 20.0), (4, 0, 23.0), (5, 30, 30.0), (4, 59, 20.0),  # 10:04:59 arrives late but within a minute
        (6, 0, 31.0),  # the watermark reaches 10:05 + 1 minute: 10:00-10:05 closes
        (3, 0, 99.0),  # past the lateness: a Late Record, in no window
    ])})
    by_target = {}
    for delivery in result.deliveries:
        by_target.setdefault(delivery.target, []).append(orjson.loads(delivery.payload))
    (aggregate,) = [e["detail"] for e in by_target["temperature-5m/aggregates"]]
    assert (aggregate["key"], aggregate["start"], aggregate["end"]) == \
        ("greenhouse-7", "2024-05-01T10:00:00.000Z", "2024-05-01T10:05:00.000Z")
    assert aggregate["aggregates"] == {"mean_temperature": 21.0, "max_temperature": 23.0, "readings": 3}
    (late,) = by_target["late-readings/late"]
    assert late["detail"]["event"]["detail"]["measurements"] == {"temperature": 99.0}


def test_the_readme_python_reducer_embeds_in_a_worker_pipeline():
    example = yaml.safe_load(block("yaml"))
    example["rules"].append({"name": "spread", "event_pattern": {"detail-type": ["Temperature spread"]},
                             "targets": [{"id": "log", "type": "log"}]})
    config = parse_config({"kafka": {"bootstrap_servers": "kafka:9092"}, **example}, environ={})
    code = block("python").replace("from streams.runtime.worker import Worker\n", "")
    scope = {"config": config, "Worker": lambda config, pipeline: pipeline}  # a real Worker needs a broker
    exec(compile(code, "README.md", "exec"), scope)
    pipeline = scope["worker"]
    result = pipeline.run({"iot.telemetry": readings([(1, 0, 20.0), (2, 0, 26.0), (9, 0, 21.0), (21, 0, 0.0)])})
    spreads = [(e["detail"]["start"][11:16], e["detail"]["aggregates"]) for e in
               (orjson.loads(d.payload) for d in result.deliveries) if e["detail-type"] == "Temperature spread"]
    # 15-minute windows every 5 minutes, closed by 10:09 (09:50-10:05) and 10:21 (the next three)
    assert spreads == [("09:50", {"spread": 6.0, "mean": 23.0, "n": 2}),
                       ("09:55", {"spread": 6.0, "mean": pytest.approx(67 / 3), "n": 3}),
                       ("10:00", {"spread": 6.0, "mean": pytest.approx(67 / 3), "n": 3}),
                       ("10:05", {"spread": 0.0, "mean": 21.0, "n": 1})]
