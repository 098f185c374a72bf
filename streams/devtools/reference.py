"""Write the configuration reference: every key of the config, then every enrichment stage's keys
(streams.config.enrich.STAGES) and every target type's (streams.targets.REGISTRY), so a new stage
or target appears without a hand edit.

    python -m streams.devtools.reference            # print the Markdown
    python -m streams.devtools.reference --write deploy/README.md   # refresh the marked section
    python -m streams.devtools.reference --check deploy/README.md   # exit 1 when it is stale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel

from processors.stage import settings_model
from processors.waitingroom.settings import ROOM_SETTINGS
from streams.config.enrich import STAGES
from streams.config.mask import FieldMaskSettings
from streams.config.reference import Rows, reference_markdown, splice
from streams.targets import REGISTRY, implementation


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def room_rows() -> Rows:
    """The waiting room's room settings (processors/waitingroom/settings.py's ROOM_SETTINGS), which are parsed by
    hand (the admin API changes them live) rather than by a pydantic model."""
    prefix = "waitingroom.rooms.<room>."
    return [(f"`{prefix}{key}`", kind, default, "—", " ".join(text.split())) for key, (kind, default, text)
            in ROOM_SETTINGS.items()]


def sections() -> dict[str, tuple[str, type[BaseModel] | Rows, str]]:
    out: dict[str, tuple[str, type[BaseModel] | Rows, str]] = {}
    out["Waiting-room room settings: `waitingroom.rooms.<room>`"] = (
        "A room's settings, the same in the rooms file (`waitingroom.rooms`) and in the admin API's "
        "`PUT /waitingroom/admin/rooms/{room}`; a change through the API applies to a live room within a tick. The "
        "waiting-room guide is the README's \"The waiting room\".", room_rows(), "")
    for name, cls in STAGES.items():
        model = settings_model(cls)
        intro = _first_paragraph(model.__doc__ if "Settings" in cls.__dict__ else None) or \
            _first_paragraph(cls.__doc__) or _first_paragraph(__import__(cls.__module__, fromlist=["_"]).__doc__)
        out[f"Enrichment stage `{name}`"] = (intro, model, "sources[].enrich[].")
    out["Masking a field: `sources[].mask.fields`"] = (
        _first_paragraph(FieldMaskSettings.__doc__), FieldMaskSettings, "sources[].mask.fields.<path>.")
    for name in REGISTRY:
        module = implementation(name)
        intro = _first_paragraph(module.__doc__)
        out[f"Target type `{name}`"] = (intro, module.Settings, "rules[].targets[].")
    return out


def markdown() -> str:
    return reference_markdown(sections())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the marked section of FILE")
    group.add_argument("--check", metavar="FILE", help="exit 1 when FILE's marked section is stale")
    args = parser.parse_args(argv)
    reference = markdown()
    target = args.write or args.check
    if not target:
        sys.stdout.write(reference)
        return 0
    path = Path(target)
    current = path.read_text()
    fresh = splice(current, reference)
    if args.check:
        if fresh != current:
            print(f"{path}: the configuration reference is stale; run python -m streams.devtools.reference --write {path}",
                  file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
