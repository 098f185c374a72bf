"""The README's event-time lake example is a configuration the worker accepts, with the documented names."""
from pathlib import Path

import yaml

from streams.config import parse_config
from streams.targets import check_targets
from streams.targets.s3.target import S3Settings
from streams.targets.s3.windowing import window_key

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = README.read_text().split("### Event-time lake objects (`event_time`)\n", 1)[1].split("\n### ", 1)[0]


def test_the_readme_event_time_example_is_a_valid_s3_target_and_names_objects_as_documented():
    example = yaml.safe_load(SECTION.split("```yaml\n", 1)[1].split("```", 1)[0])
    config = parse_config({"sources": [{"topic": "market.ticks"}], **example}, environ={})
    check_targets(config)
    (target,) = example["rules"][0]["targets"]
    settings = S3Settings.model_validate({k: v for k, v in target.items() if k not in ("id", "type")})
    assert settings.event_time is not None and settings.event_time.window == 60_000
    assert settings.event_time.allowed_lateness == 20 * 60_000 and settings.event_time.timestamp == "field"
    name = window_key("ticks/dt=2024-05-01/", "EURUSD", 1_714_557_600_000, "market.ticks", 3, "jsonl.gz")
    assert f"`{name}`" in SECTION
