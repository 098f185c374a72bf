"""deploy/docker/Dockerfile, checked statically (no Docker engine on the test machines): a
multi-stage build whose final stage has no compilers, runs as a non-root user, health-checks
/healthz and starts `eventweir`."""
from __future__ import annotations

import json
import re
import shlex

from tests.observability import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cargo|rustc|make|cmake|python3?-dev|libc6-dev)\b")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_multi_stage_with_a_slim_python_base():
    all_stages = stages()
    assert len(all_stages) >= 2, "build and runtime stages"
    final_from = all_stages[-1][0][1]
    assert re.match(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.\d+-slim", final_from), final_from
    assert "3.11" in DOCKERFILE.read_text(), "the Python the project targets"


def test_final_stage_has_no_compilers_and_copies_only_built_artifacts():
    final = stages()[-1]
    for word, args in final:
        assert not COMPILERS.search(args), f"compiler in the final stage: {word} {args}"
    copies = [args for word, args in final if word == "COPY"]
    assert copies and all(a.startswith("--from=") for a in copies), "the final stage takes only built wheels"


def test_runs_as_non_root_with_healthcheck_and_eventweir_entrypoint():
    final = stages()[-1]
    user = [args for word, args in final if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0"), "USER must be non-root"
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    entry = [args for word, args in final if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["eventweir"]
    cmd = json.loads([args for word, args in final if word == "CMD"][-1])
    assert cmd[:2] == ["run", "-c"]
    exposed = [args for word, args in final if word == "EXPOSE"]
    from streams.config import HttpSettings
    assert exposed and int(exposed[0]) == HttpSettings().port


def test_build_context_is_narrowed_by_the_dockerignore():
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "ignore everything by default"
    copied = {shlex.split(args)[0].rstrip("/") for word, args in instructions(DOCKERFILE.read_text())
              if word == "COPY" and not args.startswith("--from")}
    for src in copied:  # whatever the build copies is let back in, and exists
        assert f"!{src}" in ignore or f"!{src}/" in ignore, src
        assert (ROOT / src).exists(), src
