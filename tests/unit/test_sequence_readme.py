"""The README's sequence example is a config the worker runs: gaps are routed, with the documented detail."""
from pathlib import Path

import orjson
import yaml

from processors.core import SourceRecord
from streams.config import parse_config
from streams.runtime.topology import build_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("### Sequence gaps\n", 1)[1].split("\n### ", 1)[0]


def tick(offset, instrument, seq):
    return SourceRecord("market.ticks", 0, offset, 0, instrument.encode(), orjson.dumps({
        "version": "0", "id": f"t{offset}", "detail-type": "Tick", "source": "market.venue", "account": "123456789012",
        "time": "2024-05-01T10:00:01Z", "region": "eu-west-1", "resources": [],
        "detail": {"instrument": instrument, "seq": seq, "px": 1.0842}}))


def test_the_readme_sequence_example_routes_gap_events():
    example = yaml.safe_load(SECTION.split("```yaml\n", 1)[1].split("```", 1)[0])
    pipeline = build_pipeline(parse_config({"kafka": {"bootstrap_servers": "kafka:9092"}, **example}, environ={}))
    feed = [("EURUSD", 1041), ("EURUSD", 1042), ("EURUSD", 1047), ("EURUSD", 1044), ("EURUSD", 1047)]
    result = pipeline.run({"market.ticks": [tick(i, *t) for i, t in enumerate(feed)]})
    (gap,) = [orjson.loads(d.payload) for d in result.deliveries]
    documented = orjson.loads(SECTION.split("```json\n", 1)[1].split("```", 1)[0].replace('"…"', '"x"'))
    assert gap["detail"] == documented["detail"]
    assert (gap["source"], gap["detail-type"], gap["time"]) == ("market.feed", "Gap Detected", documented["time"])
