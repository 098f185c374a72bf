"""Pure parts of the sinks: path templates, line protocol escaping."""
from __future__ import annotations

import pytest

from streams.targets.influxdb.lineprotocol import PointError, encode_point
from streams.targets.s3.layout import LayoutError, compile_template, object_key, parse_time


def test_template_renders_fields_times_in_the_zone_and_sanitises_values():
    t = compile_template("src={source}/!{timestamp:yyyy/MM/dd/HH}/{detail.site}/", "America/New_York")
    when = parse_time("2026-11-22T03:30:00Z")  # still the 21st in New York
    assert t.render({"source": "a/b c", "detail": {"site": "Zürich"}}, when) == "src=a_b_c/2026/11/21/22/Z_rich/"
    cached = t.renderer()
    assert cached({"source": "x", "detail": {"site": True}}, when) == "src=x/2026/11/21/22/true/"
    assert cached({"source": "x", "detail": {"site": 1}}, when) == "src=x/2026/11/21/22/1/"  # not the cached True


def test_template_errors_say_what_was_expected():
    with pytest.raises(LayoutError, match="unsupported letter 'E'"):
        compile_template("!{timestamp:EEE}/")
    with pytest.raises(LayoutError, match="unknown time zone"):
        compile_template("x/", "Mars/Olympus")
    with pytest.raises(LayoutError, match="unbalanced braces"):
        compile_template("x/{source/")
    with pytest.raises(LayoutError, match="must not start with '/'"):
        compile_template("/x/")


def test_object_keys_are_zero_padded_for_lexical_order():
    assert object_key("a/b", "iot.t", 3, 42, "parquet") == "a/b/iot.t+3+00000000000000000042.parquet"
    assert object_key("a/", "t", 0, 10**18, "jsonl.gz") < object_key("a/", "t", 0, 2 * 10**18, "jsonl.gz")


def test_line_protocol_escapes_every_part():
    line = encode_point("cpu load,x", {"host name": "a=b,c", "empty": ""},
                        [("f=1", 'q"\\', "string"), ("n", 2.0, "integer"), ("v", 1, "float")], 5)
    assert line == 'cpu\\ load\\,x,host\\ name=a\\=b\\,c f\\=1="q\\"\\\\",n=2i,v=1.0 5'


def test_line_protocol_refuses_what_influxdb_cannot_store():
    with pytest.raises(PointError, match="not a finite number"):
        encode_point("m", {}, [("v", float("nan"), "float")], None)
    with pytest.raises(PointError, match="newline"):
        encode_point("m", {"t": "a\nb"}, [("v", 1.0, "float")], None)
    with pytest.raises(PointError, match="at least one field"):
        encode_point("m", {"t": "a"}, [], None)
    with pytest.raises(PointError, match="expected an integer"):
        encode_point("m", {}, [("v", 1.5, "integer")], None)
    with pytest.raises(PointError, match="ends with a backslash"):  # it would escape the separator
        encode_point("m", {"t": "a\\"}, [("v", True, "boolean")], None)


def test_firehose_dynamic_partitioning_placeholders():
    # issue 21 item 6: these were accepted, then sent every record to the error prefix
    from streams.targets.s3.layout import RANDOM_MARK, random_string

    t = compile_template("customer=!{partitionKeyFromQuery:customer}/!{firehose:random-string}/",
                         partition_keys={"customer": '.detail["customer-id"]'})
    prefix = t.render({"detail": {"customer-id": "c/42"}}, None)
    assert prefix == f"customer=c_42/{RANDOM_MARK}/"
    token = random_string("orders", 3)
    assert len(token) == 11 and token == random_string("orders", 3) != random_string("orders", 4)
    err = compile_template("errors/!{firehose:error-output-type}/", allowed_fields=("error-type",))
    assert err.render({"error-type": "MissingPartitionField"}, None) == "errors/MissingPartitionField/"


@pytest.mark.parametrize("template, keys, message", [
    ("c=!{partitionKeyFromQuery:customer}/", {}, r"needs partition_keys\.customer"),
    ("c=!{partitionKeyFromQuery:customer}/", {"customer": ".detail | ascii"}, r"partition_keys\.customer: .* JQ subset"),
    ("c=!{partitionKeyFromLambda:customer}/", {}, r"needs a Firehose Lambda, which eventweir does not run"),
    ("x/!{firehose:something}/", {}, r"unsupported placeholder !\{firehose:something\}"),
    ("'year'=YYYY/'month'=MM/", {}, r"Kafka Connect's path\.format syntax"),
])
def test_what_cannot_work_is_refused_with_what_to_write(template, keys, message):
    with pytest.raises(LayoutError, match=message):
        compile_template(template, partition_keys=keys)


def test_a_bad_prefix_stops_the_config_naming_the_key():
    from streams.config import ConfigError, parse_config
    from streams.targets import check_targets

    config = parse_config({"sources": [{"topic": "in"}], "rules": [{"name": "r", "targets": [
        {"id": "lake", "type": "s3", "bucket": "b", "prefix": "c=!{partitionKeyFromLambda:c}/"}]}]}, environ={})
    with pytest.raises(ConfigError, match=r"^rules\[r\]\.targets\[lake\]: prefix: .*partitionKeyFromLambda"):
        check_targets(config)
