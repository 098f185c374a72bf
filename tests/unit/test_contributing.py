"""CONTRIBUTING.md's worked examples work as written: a new target is its module and one registry
line, a new enrichment stage its class and one entry, and both reach the config checks."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from processors.core import Event, SourceRecord
from streams.config import ConfigError, parse_config

GUIDE = (Path(__file__).resolve().parents[2] / "CONTRIBUTING.md").read_text()


def example(path: str) -> types.ModuleType:
    """The guide's code block that starts with `# <path>`, loaded as that module."""
    code = re.search(rf"```python\n# {re.escape(path)}\n(.*?)```", GUIDE, re.S).group(1)
    name = path.removesuffix(".py").replace("/", ".")
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(code, path, "exec"), module.__dict__)
    return module


@pytest.fixture
def stdout_target(monkeypatch):
    from streams import targets

    example("streams/targets/stdout.py")
    monkeypatch.setitem(targets.REGISTRY, "stdout", "streams.targets.stdout")
    targets.implementation.cache_clear()
    yield
    targets.implementation.cache_clear()
    sys.modules.pop("streams.targets.stdout", None)


def test_the_new_target_example_is_checked_and_built(stdout_target, capsys):
    from streams.devtools.reference import markdown
    from streams.targets import BuildContext, build_target, check_targets

    def config(target):
        return parse_config({"sources": [{"topic": "in"}], "rules": [{"name": "r", "targets": [target]}]}, environ={})

    with pytest.raises(ConfigError, match=r"rules\[r\]\.targets\[p\]\.prefx: unknown key"):
        check_targets(config({"id": "p", "type": "stdout", "prefx": ">"}))
    spec = config({"id": "p", "type": "stdout", "prefix": "> "}).rules[0].targets[0]
    target = build_target(BuildContext(producer=None, dead_letters=None, max_in_flight=10), "r", "r/p", spec)
    assert target.prefix == "> " and "`rules[].targets[].prefix`" in markdown()


def test_the_new_stage_example_is_checked_and_runs(monkeypatch):
    from streams.config import enrich

    rename = example("processors/enrich/rename.py")
    monkeypatch.setitem(enrich.STAGES, "rename", rename.Rename)
    with pytest.raises(ConfigError, match=r"sources\[0\]\.enrich\[0\]\.into: required key is missing"):
        parse_config({"sources": [{"topic": "t", "enrich": [{"type": "rename", "field": "detail.temp"}]}]},
                     environ={})
    stage = rename.Rename(field="detail.temp", into="detail.t")
    event = Event(SourceRecord("t", 0, 0, 0, None, b"{}"), {"detail": {"temp": 21}})
    assert stage.process([event], [])[0].body["detail"] == {"temp": 21, "t": 21}
