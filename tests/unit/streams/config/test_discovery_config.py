"""Schema discovery is opt-in per bus: the README's example is a config the worker accepts, and
only the chains of the buses that turn it on get the discovery stage."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from processors.core import Event
from processors.discovery import Discovery
from streams.config import ConfigError, parse_config
from streams.runtime.topology import build_pipeline

README = Path(__file__).resolve().parents[4] / "README.md"


def test_the_readme_example_turns_discovery_on_for_the_buses_it_names():
    section = README.read_text().split("### Schema discovery\n", 1)[1].split("\n### ", 1)[0]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    config = parse_config({**example, "sources": [{"topic": "iot.readings", "kind": "iot"}]}, environ={})
    assert config.bus.discovery.enabled and config.buses[0].discovery.sample_every == 10


def test_only_the_chains_of_a_bus_with_discovery_observe_its_events():
    config = parse_config({
        "sources": [{"topic": "clicks", "kind": "envelope"}],
        "buses": [{"name": "orders", "topic": "orders.bus", "discovery": {"enabled": True}},
                  {"name": "audit", "topic": "audit.bus"}],
    }, environ={})
    pipeline = build_pipeline(config)
    stage, _ = pipeline.discovery["orders"]
    assert set(pipeline.discovery) == {"orders"}
    with_stage = {topic for topic, chain in pipeline.chains.items() if any(isinstance(s, Discovery) for s in chain.stages)}
    assert with_stage == {"orders.bus"}
    body = {"version": "0", "id": "1", "detail-type": "Order Placed", "source": "shop", "account": "000000000000",
            "time": "2026-12-06T10:00:00Z", "region": "local", "resources": [], "detail": {"id": 1}}
    pipeline.chains["orders.bus"].stages[-1].process([Event(None, body)], [])
    assert list(stage.observed) == [("shop", "Order Placed")]


def test_a_bad_discovery_key_names_its_path():
    with pytest.raises(ConfigError, match=r"bus\.discovery\.sample_every"):
        parse_config({"sources": [{"topic": "t"}], "bus": {"discovery": {"enabled": True, "sample_every": 0}}}, environ={})
