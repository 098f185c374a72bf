"""The published schemas: valid 2020-12 documents, samples pass, each invalid sample names its field and rule."""
from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

import schemas
from streams.cli import main

DATA = Path(__file__).resolve().parents[2] / "data"


def _lines(name):
    return [orjson.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _debezium_samples():
    return orjson.loads((DATA / "debezium.json").read_bytes())


def test_every_schema_is_a_valid_2020_12_document():
    listed = schemas.list_schemas()
    assert {"envelope", "iot", "clickstream", "debezium", "debezium-flat"} <= set(listed)
    for name, versions in listed.items():
        for v in versions:
            doc = schemas.load_schema(name, v)
            assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
            jsonschema.Draft202012Validator.check_schema(doc)


def _valid_samples():
    out = [("iot", d) for d in _lines("iot.jsonl")] + [("clickstream", d) for d in _lines("clickstream.jsonl")]
    for key, sample in _debezium_samples().items():
        if sample["value"] is not None:
            out.append(("debezium-flat" if key.startswith("flat") else "debezium", sample["value"]))
    return out


def _invalid_samples():
    out = [("iot", c) for c in _lines("iot_invalid.jsonl")]
    out += [("clickstream", c) for c in _lines("clickstream_invalid.jsonl")]
    out += [(c["schema"], c) for c in _lines("debezium_invalid.jsonl")]
    return out


@pytest.mark.parametrize("name,doc", _valid_samples())
def test_realistic_samples_validate_and_agree_with_reference_validator(name, doc):
    assert schemas.validator(name)(doc) is None
    reference = jsonschema.Draft202012Validator(schemas.load_schema(name), format_checker=jsonschema.FormatChecker())
    assert list(reference.iter_errors(doc)) == []


@pytest.mark.parametrize("name,case", _invalid_samples())
def test_invalid_samples_name_field_and_rule(name, case):
    error = schemas.validator(name)(case["doc"])
    assert error is not None
    assert (error.field, error.rule) == (case["field"], case["rule"])
    text = str(error)
    assert case["rule"] in text and (case["field"] in text or case["field"] == "")
    # the reference validator rejects the same documents: the contract is the file, not our compiler
    reference = jsonschema.Draft202012Validator(schemas.load_schema(name), format_checker=jsonschema.FormatChecker())
    assert list(reference.iter_errors(case["doc"]))


def test_versions_and_references():
    assert schemas.parse_ref("iot") == ("iot", None)
    assert schemas.parse_ref("iot@v1") == ("iot", 1)
    assert schemas.parse_ref("iot/v2") == ("iot", 2)
    with pytest.raises(schemas.SchemaNotFound, match="no version 9"):
        schemas.load_schema("iot", 9)
    with pytest.raises(schemas.SchemaNotFound, match="unknown schema 'nope'"):
        schemas.validator("nope")
    assert schemas.validator("iot") is schemas.validator("iot", schemas.list_schemas()["iot"][-1])


def test_cli_export_writes_every_version(tmp_path, capsys):
    assert main(["schemas", "export", "--out", str(tmp_path)]) == 0
    for name, versions in schemas.list_schemas().items():
        for v in versions:
            assert orjson.loads((tmp_path / name / f"v{v}.json").read_bytes()) == schemas.load_schema(name, v)
    assert "wrote" in capsys.readouterr().out


def test_an_invalid_document_too_deep_to_explain_gets_a_reason_not_a_python_error():
    # the hostile-probe rerun of issue 21: a record 300 levels deep was dead-lettered as
    # "ProcessorError: ValueError: Recursion limit reached" from the error explanation
    deep: object = 1
    for _ in range(300):
        deep = {"a": deep}
    error = schemas.validator("iot")(deep)
    assert error is not None and error.rule == "depth"
    assert "nested deeper than 255 levels" in str(error)
    shallow = schemas.validator("iot")({"a": 1})  # shallow documents still get their exact reason
    assert shallow is not None and shallow.rule != "depth"
