"""The README's enrichment example is a config the worker accepts, stage for stage."""
from pathlib import Path

import yaml

from processors.enrich import IpEnricher, ReferenceJoin, Scd2History, Sessioniser, ThresholdAlerts
from streams.config import parse_config
from streams.runtime.topology import build_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_enrichment_example_builds_every_stage():
    text = README.read_text().split("### Enrichment\n", 1)[1]
    example = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    pipeline = build_pipeline(parse_config({"kafka": {"bootstrap_servers": "kafka:9092"}, **example}, environ={}))
    kinds = {topic: [type(s).__name__ for s in chain.stages] for topic, chain in pipeline.chains.items()}
    assert kinds["iot.telemetry"][-6:] == ["ReferenceJoin", "UnitNormaliser", "DerivedFields", "DeviceOrderCheck",
                                           "ThresholdAlerts", "TumblingCount"]
    assert kinds["clickstream.web"][-4:] == ["Sessioniser", "UserAgentEnricher", "IpEnricher", "HttpLookup"]
    assert kinds["dbserver1.inventory.customers"][-2:] == ["CdcDeduplicator", "Scd2History"]
    assert set(pipeline.tables) == {"devices"} and pipeline.is_async
    stages = {type(s): s for chain in pipeline.chains.values() for s in chain.stages}
    assert stages[ReferenceJoin].table is pipeline.tables["devices"]
    assert stages[Sessioniser].gap_ms == 30 * 60_000
    assert isinstance(stages[IpEnricher], IpEnricher) and isinstance(stages[Scd2History], Scd2History)
    assert len(stages[ThresholdAlerts].rules) == 1
