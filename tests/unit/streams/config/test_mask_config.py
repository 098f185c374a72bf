"""`sources[].mask`: the key from the environment or a file, the schema's x-pii as defaults that
config overrides, and mistakes named by key without the secret in the message."""
from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from processors.chain import Chain
from streams.config import ConfigError, parse_config
from streams.runtime.topology import build_stages
from tests.samples import record

KEY = "a-long-enough-secret-0123456789"
CLICK = {"event_id": "e1", "event_name": "page_view", "anonymous_id": "anon-1", "platform": "web",
         "timestamp": "2024-11-25T10:42:17Z", "user_id": "alice@example.com", "ip": "203.0.113.77",
         "locale": "en-GB", "page": {"url": "https://shop.example/?email=alice@example.com"}}


def _masked(mask: dict, environ: dict) -> dict:
    config = parse_config({"sources": [{"topic": "clicks", "kind": "clickstream", "mask": mask}]}, environ=environ)
    stages, decoders = build_stages(config)
    (event,) = Chain(decoders["clicks"], stages["clicks"]).run([record("clicks", CLICK)], [])
    return orjson.loads(event.record.value)


def test_schema_x_pii_defaults_with_config_overrides_and_the_key_from_a_file(tmp_path):
    secret = tmp_path / "pii-key"
    secret.write_text(KEY + "\n")
    out = _masked({"hmac_secret": "${PII_HMAC_KEY}", "fields": {"anonymous_id": "keep", "page.url": "redact",
                                                              "ip": {"method": "truncate", "ipv4_prefix": 16}}},
                  {"PII_HMAC_KEY_FILE": str(secret)})
    assert out["user_id"] == hmac.new(KEY.encode(), b"alice@example.com", hashlib.sha256).hexdigest()  # x-pii: hmac
    assert out["anonymous_id"] == "anon-1" and out["ip"] == "203.0.0.0" and out["page"] == {"url": "[REDACTED]"}
    assert out["locale"] == "en-GB"
    without_defaults = _masked({"schema_defaults": False, "fields": {"ip": "truncate"}}, {})
    assert without_defaults["user_id"] == "alice@example.com" and without_defaults["ip"] == "203.0.113.0"


def test_hmac_without_a_key_stops_the_worker_naming_the_source():
    config = parse_config({"sources": [{"topic": "clicks", "kind": "clickstream", "mask": {}}]}, environ={})
    with pytest.raises(ConfigError, match=r"sources\[0\].mask: hmac on anonymous_id, user_id needs a secret key"):
        build_stages(config)


def test_mistakes_are_named_and_the_secret_is_never_echoed():
    secret = "do-not-print-me-0123456789"
    with pytest.raises(ConfigError) as err:
        parse_config({"sources": [{"topic": "clicks", "kind": "clickstream", "mask": {
            "hmac_secret": ["${PII}"], "fields": {"ip": {"method": "truncate", "bucket": 3}, "a..b": "drop"},
            "dead_letters": "keep"}}]}, environ={"PII": secret})
    text = str(err.value)
    assert "sources[0].mask.hmac_secret:" in text and "<redacted>" in text and secret not in text
    assert "sources[0].mask.fields.ip: bucket: not an option of truncate" in text
    assert "sources[0].mask.dead_letters: Input should be 'mask', 'withhold' or 'raw'" in text
    with pytest.raises(ConfigError, match=r"sources\[0\].mask.fields: field path 'a..b'"):
        parse_config({"sources": [{"topic": "c", "mask": {"fields": {"a..b": "drop"}}}]}, environ={})
    config = parse_config({"sources": [{"topic": "c", "mask": {"hmac_secret": secret, "fields": {"x": "hmac"}}}]},
                          environ={})
    assert secret not in repr(config) and secret not in str(config.model_dump())


def test_the_readme_masking_example_is_a_config_the_worker_accepts():
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[4] / "README.md").read_text().split("### Masking personal data\n", 1)[1]
    example = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    config = parse_config(example, environ={"PII_HMAC_KEY": KEY})
    stages, decoders = build_stages(config)
    event = dict(CLICK, sent_at="2024-11-25T10:42:18.120Z",
                 properties={"email": "alice@example.com", "price": 37.5, "cart": [{"email": "bob@example.com"}]})
    (out,) = Chain(decoders["clickstream.web"], stages["clickstream.web"]).run([record("clickstream.web", event)], [])
    detail = out.body["detail"]
    assert detail["user_id"] == hmac.new(KEY.encode(), b"alice@example.com", hashlib.sha256).hexdigest()
    assert detail["anonymous_id"] == "anon-1" and detail["ip"] == "203.0.113.0" and detail["page"]["url"] == "[REDACTED]"
    assert detail["sent_at"] == "2024-11-25T10:00:00Z" and detail["properties"]["price"] == 30
    assert detail["properties"]["cart"] == [{}] and len(detail["properties"]["email"]) == 16
