"""Input, InputPath and InputTransformer: predefined placeholders, validation and limits."""
import orjson
import pytest

from processors.routing import ValidationException, compile_target_input

EVENT = {"version": "0", "id": "e1", "detail-type": "t", "source": "s", "account": "1",
         "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
         "detail": {"a": "x\"y", "n": 3, "obj": {"k": "v"}}}


def render(**kw):
    return compile_target_input(**kw, target_id="t1").render(EVENT, "my-rule", "arn:rule", "2026-01-01T00:00:01Z")


def test_predefined_placeholders_in_json_template():
    body = render(input_transformer={"InputTemplate":
        '{"r": <aws.events.rule-name>, "arn": "<aws.events.rule-arn>", "t": <aws.events.event.ingestion-time>,'
        ' "e": <aws.events.event>, "full": <aws.events.event.json>}'})
    got = orjson.loads(body)
    assert got["r"] == "my-rule" and got["arn"] == "arn:rule" and got["t"] == "2026-01-01T00:00:01Z"
    assert got["e"] == {"id": "e1", "account": "1", "detailType": "t", "time": "2026-01-01T00:00:00Z", "source": "s",
                        "region": "us-east-1", "resources": [], "version": "0"}  # as AWS: no detail, detailType
    assert list(got["e"]) == ["id", "account", "detailType", "time", "source", "region", "resources", "version"]
    assert got["full"] == EVENT


def test_string_inside_quotes_is_escaped_and_missing_paths():
    body = render(input_transformer={"InputPathsMap": {"a": "$.detail.a", "m": "$.detail.missing"},
                                     "InputTemplate": '{"a": "<a>", "m": <m>, "q": "<m>"}'})
    assert orjson.loads(body) == {"a": 'x"y', "m": "", "q": ""}  # AWS: "" for a missing path, not null


def test_input_path_and_constant_and_default():
    assert orjson.loads(render(input_path="$.detail.obj")) == {"k": "v"}
    assert render(input='{"c": 1}') == b'{"c": 1}'
    assert orjson.loads(render()) == EVENT


def test_only_one_of_the_three():
    with pytest.raises(ValidationException,
                       match=r"^Only one of Input, InputPath, or InputTransformer must be provided for target t1\.$"):
        compile_target_input(input="{}", input_path="$.detail", target_id="t1")


def test_a_placeholder_neither_mapped_nor_predefined_is_refused():
    with pytest.raises(ValidationException, match=r"^InputTemplate for target t1 contains invalid placeholder b\.$"):
        compile_target_input(input_transformer={"InputPathsMap": {"a": "$.detail.a"}, "InputTemplate": '"<a> <b>"'},
                             target_id="t1")
    compile_target_input(input_transformer={"InputTemplate": '"<aws.events.rule-name>"'}, target_id="t1")


def test_limits():
    ok = {f"k{i}": "$.detail.a" for i in range(100)}
    compile_target_input(input_transformer={"InputPathsMap": ok, "InputTemplate": '"x"'}, target_id="t1")
    with pytest.raises(ValidationException, match="100"):
        compile_target_input(input_transformer={"InputPathsMap": {**ok, "k100": "$.a"}, "InputTemplate": '"x"'}, target_id="t1")
    compile_target_input(input_transformer={"InputTemplate": '"' + "x" * 8190 + '"'}, target_id="t1")
    with pytest.raises(ValidationException, match="8192"):
        compile_target_input(input_transformer={"InputTemplate": '"' + "x" * 8191 + '"'}, target_id="t1")
    with pytest.raises(ValidationException):
        compile_target_input(input_transformer={"InputPathsMap": {"a": "detail.a"}, "InputTemplate": '"x"'}, target_id="t1")
