"""PII masking: each method on the values users send, paths through lists, and what dead letters keep."""
from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from processors.chain import Chain
from processors.decode import Decoder
from processors.mask import FieldRule, MaskedRecord, Masker, schema_rules
from processors.normalise import ClickstreamNormaliser
from processors.validate import SchemaValidator
from schemas import load_schema
from tests.samples import record

KEY = b"k" * 32


def masked(fields: dict, body: dict, key: bytes | None = KEY) -> dict:
    rules = {path: FieldRule.of(spec) for path, spec in fields.items()}
    events = Chain(Decoder(), [Masker(rules, key)]).run([record("t", body)], [])
    return orjson.loads(events[0].record.value)


def test_hmac_is_keyed_stable_and_cut_to_length():
    expected = hmac.new(KEY, b"alice@example.com", hashlib.sha256).hexdigest()
    assert masked({"email": "hmac"}, {"email": "alice@example.com"}) == {"email": expected}
    # another worker, another run: the same pseudonym
    assert masked({"email": "hmac"}, {"email": "alice@example.com"}) == {"email": expected}
    assert masked({"email": {"method": "hmac", "length": 16}}, {"email": "alice@example.com"}) == {"email": expected[:16]}
    other_key = masked({"email": "hmac"}, {"email": "alice@example.com"}, key=b"o" * 32)
    assert other_key["email"] != expected


def test_hmac_base64url_and_non_string_values():
    out = masked({"n": {"method": "hmac", "encoding": "base64url", "length": 22}, "s": "hmac", "o": "hmac"},
                 {"n": 42, "s": "42", "o": {"b": 1, "a": 2}})
    assert len(out["n"]) == 22 and set(out["n"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert out["s"] == masked({"s": "hmac"}, {"s": 42})["s"]  # a number keyed as its JSON text: "42" and 42 join
    assert out["o"] == masked({"o": "hmac"}, {"o": {"a": 2, "b": 1}})["o"]  # an object by its content


def test_hmac_without_a_key_is_refused():
    with pytest.raises(ValueError, match="needs a secret key"):
        Masker({"email": FieldRule("hmac")}, None)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Masker({"email": FieldRule("hmac")}, b"short")


def test_redact_and_drop():
    assert masked({"a": "redact", "b": {"method": "redact", "replacement": None}, "c": "drop"},
                  {"a": "x", "b": {"deep": 1}, "c": "gone", "d": 1}) == {"a": "[REDACTED]", "b": None, "d": 1}


@pytest.mark.parametrize(("value", "spec", "expected"), [
    ("203.0.113.77", "truncate", "203.0.113.0"),
    ("203.0.113.77", {"method": "truncate", "ipv4_prefix": 16}, "203.0.0.0"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "truncate", "2001:db8:85a3::"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", {"method": "truncate", "ipv6_prefix": 32}, "2001:db8::"),
    ("::ffff:203.0.113.77", {"method": "truncate", "ipv6_prefix": 120}, "::ffff:cb00:7100"),
    ("999.1.1.1", "truncate", "[REDACTED]"),  # not an IP, and no length: never passed through
    ("not an ip", {"method": "truncate", "length": 3}, "not"),
    (12345, "truncate", "[REDACTED]"),
])
def test_truncate(value, spec, expected):
    assert masked({"ip": spec}, {"ip": value}) == {"ip": expected}


@pytest.mark.parametrize(("value", "spec", "expected"), [
    ("2024-11-25T10:42:17.123Z", {"method": "generalise", "to": "hour"}, "2024-11-25T10:00:00Z"),
    ("2024-11-25T10:42:17+02:00", {"method": "generalise", "to": "day"}, "2024-11-25T00:00:00+02:00"),
    (1732531337123, {"method": "generalise", "to": "hour"}, 1732528800000),
    (1732531337123, {"method": "generalise", "to": "day"}, 1732492800000),
    (37, {"method": "generalise", "bucket": 10}, 30),
    (37.5, {"method": "generalise", "bucket": 0.5}, 37.5),
    (-3, {"method": "generalise", "bucket": 10}, -10),
    ("yesterday", {"method": "generalise", "to": "hour"}, "[REDACTED]"),
    ("37", {"method": "generalise", "bucket": 10}, "[REDACTED]"),
    (True, {"method": "generalise", "bucket": 10}, "[REDACTED]"),
])
def test_generalise(value, spec, expected):
    assert masked({"v": spec}, {"v": value}) == {"v": expected}


def test_paths_through_lists_missing_paths_and_nulls():
    body = {"items": [{"email": "a@x.io", "sku": 1}, {"sku": 2}, "not an object", {"email": None}],
            "user": {"ips": ["10.1.2.3", "2001:db8::1"]}, "$.detail": 1}
    out = masked({"items.email": "redact", "user.ips": "truncate", "absent.path": "drop", "user.none": "hmac"}, body)
    assert out["items"] == [{"email": "[REDACTED]", "sku": 1}, {"sku": 2}, "not an object", {"email": None}]
    assert out["user"] == {"ips": ["10.1.2.0", "2001:db8::"]}


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="bucket: not an option of truncate"):
        FieldRule.of({"method": "truncate", "bucket": 3})
    with pytest.raises(ValueError, match="one of `to`"):
        FieldRule.of({"method": "generalise"})
    with pytest.raises(ValueError, match="method 'hash'"):
        FieldRule.of("hash")


def test_x_pii_annotations_of_the_shipped_clickstream_schema():
    rules = schema_rules(load_schema("clickstream"))
    assert rules["user_id"].method == "hmac" and rules["ip"].method == "truncate"
    nested = schema_rules({"properties": {"items": {"type": "array", "items": {
        "properties": {"email": {"x-pii": {"method": "hmac", "length": 12}}}}}}})
    assert nested == {"items.email": FieldRule("hmac", length=12)}
    with pytest.raises(ValueError, match="x-pii of a: method 'nope'"):
        schema_rules({"properties": {"a": {"x-pii": "nope"}}})


CLICK = {"event_id": "e1", "event_name": "page_view", "anonymous_id": "anon-1", "platform": "web",
         "timestamp": "2024-11-25T10:42:17Z", "user_id": "alice@example.com", "ip": "203.0.113.77"}


def _chain(dead_letters: str) -> Chain:
    rules = {"user_id": FieldRule("hmac"), "ip": FieldRule("truncate")}
    return Chain(Decoder(), [SchemaValidator({"clicks": "clickstream"}), Masker(rules, KEY, dead_letters),
                             ClickstreamNormaliser()])


def test_later_stages_and_targets_see_only_the_masked_record():
    failures: list = []
    (event,) = _chain("mask").run([record("clicks", CLICK)], failures)
    assert type(event.record) is MaskedRecord and b"alice" not in event.record.value and b"113.77" not in event.record.value
    assert event.body["detail"]["ip"] == "203.0.113.0" and event.record.offset == 0


@pytest.mark.parametrize("policy", ["mask", "withhold", "raw"])
def test_dead_letters_of_records_that_fail_before_masking(policy):
    long_id = "alice@example.com/" + "x" * 120
    invalid = dict(CLICK, user_id=long_id)  # fails validation (too long), and the message quotes it
    failures: list = []
    _chain(policy).run([record("clicks", invalid), record("clicks", b"{not json alice@example.com")], failures)
    schema_failure, decode_failure = sorted(failures, key=lambda f: f.stage, reverse=True)
    assert schema_failure.error == "schema_invalid"
    if policy == "raw":  # kept for reprocessing, as it came
        assert b"alice@example.com" in schema_failure.record.value and "alice" in schema_failure.message
        return
    assert schema_failure.record.masked == policy
    assert "alice" not in schema_failure.message and "203.0.113.77" not in schema_failure.message
    if policy == "mask":
        kept = orjson.loads(schema_failure.record.value)
        assert kept["platform"] == "web" and kept["ip"] == "203.0.113.0"
        assert kept["user_id"] == hmac.new(KEY, long_id.encode(), hashlib.sha256).hexdigest()
    else:
        assert schema_failure.record.value is None
    assert decode_failure.record.value is None  # not JSON: nothing can be masked in it, so it is withheld


def test_a_masked_record_that_cannot_be_written_as_json_is_withheld_not_sent_clear():
    class AddsASet:  # a later stage leaves something JSON cannot hold in the payload
        def process(self, events, failures):
            for event in events:
                event.body["tags"] = {"a"}
            return events

    (event,) = Chain(Decoder(), [Masker({"ip": FieldRule("truncate")}), AddsASet()]).run(
        [record("t", {"ip": "203.0.113.77"})], [])
    assert event.record.value is None and event.record.masked == "withhold"
