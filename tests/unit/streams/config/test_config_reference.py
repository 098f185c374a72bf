"""The configuration reference in deploy/README.md is generated from the config model: it is up to
date, and the environment variable it names for each key really sets that key."""
from __future__ import annotations

import re
import typing

import pytest

from streams.config import Config, parse_config
from streams.config.reference import END, START, rows, splice
from streams.devtools.reference import main, markdown
from tests.observability import DEPLOY

README = DEPLOY / "README.md"
MINIMAL = {"sources": [{"topic": "in"}]}


def test_readme_reference_is_up_to_date():
    current = README.read_text()
    assert splice(current, markdown()) == current, \
        "deploy/README.md's configuration reference is stale: run python -m streams.devtools.reference --write deploy/README.md"
    assert main(["--check", str(README)]) == 0


def test_check_reports_a_stale_section(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{START}\n| old |\n{END}\nrest\n")
    assert main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--write", str(stale)]) == 0 and main(["--check", str(stale)]) == 0
    assert stale.read_text().endswith("rest\n")


def test_every_room_setting_is_in_the_reference():
    """The waiting room's room settings are parsed by hand, not by the config model: their own table."""
    from processors.waitingroom.settings import ROOM_SETTINGS

    text = README.read_text()
    for key in ROOM_SETTINGS:
        assert f"| `waitingroom.rooms.<room>.{key}` |" in text, key


def leaf_fields(model=Config, prefix=""):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Config.__mro__[1]):
            yield from leaf_fields(annotation, f"{prefix}{name}.")
        else:
            yield prefix + name, field


def test_every_key_of_every_section_is_in_the_reference():
    documented = {re.match(r"`([^`]+)`", r[0]).group(1) for r in rows()}
    for path, _ in leaf_fields():
        assert path in documented, path


def other_value(type_cell: str, default: str, constraints: str):
    """A valid value different from the default, for integer and one-of keys."""
    if type_cell.startswith("one of"):
        options = re.findall(r"`([^`]+)`", type_cell)
        return next(o for o in options if f"`{o}`" != default)
    if type_cell == "integer":
        value = int(default.strip("`")) + 1
        upper = re.search(r"≤ (\d+)", constraints)
        return value if not upper or value <= int(upper.group(1)) else value - 2
    return None


def env_rows():
    for r in rows():
        # integer and one-of keys: a different valid value is easy to pick (strings take anything)
        if r[3].startswith("`EVENTWEIR_") and "(YAML)" not in r[3] and other_value(r[1], r[2], r[4]) is not None:
            yield pytest.param(r, id=r[0])


@pytest.mark.parametrize("row", list(env_rows()))
def test_the_documented_environment_variable_sets_the_key(row):
    key, type_cell, default, env, description = row
    value = other_value(type_cell, default, description)
    environ = {env.strip("`"): str(value)}
    if key.startswith("`waitingroom."):  # an optional section with a required key: give it too
        environ["EVENTWEIR_WAITINGROOM__ADMIN_TOKEN"] = "an-admin-token-of-16+-chars"
    if key.startswith("`archives."):  # archives.s3, optional, needs its bucket (and storage s3 needs archives.s3)
        environ.setdefault("EVENTWEIR_ARCHIVES__S3__BUCKET", "archives")
    config = parse_config(dict(MINIMAL), environ=environ)
    node: typing.Any = config
    for part in key.strip("`").split("."):
        node = getattr(node, part)
    assert str(node) == str(value)


def test_every_target_types_keys_are_in_the_reference():
    # a new target is its module and one REGISTRY line: its keys reach the docs with no hand edit
    from streams.targets import REGISTRY, implementation

    reference = markdown()
    for name in REGISTRY:
        assert f"#### Target type `{name}`" in reference
        for key in implementation(name).Settings.model_fields:
            assert f"`rules[].targets[].{key}" in reference, f"{name}.{key} is not in the reference"


def test_every_enrichment_stages_keys_are_in_the_reference():
    # a new stage is its class and one STAGES entry: its keys reach the docs with no hand edit
    from processors.stage import settings_model
    from streams.config.enrich import STAGES

    reference = markdown()
    for name, cls in STAGES.items():
        assert f"#### Enrichment stage `{name}`" in reference
        for key in settings_model(cls).model_fields:
            assert f"`sources[].enrich[].{key}" in reference, f"{name}.{key} is not in the reference"
