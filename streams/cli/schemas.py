"""`eventweir schemas export [--out DIR]`: write the published JSON Schemas for producers;
`eventweir schemas discovered`: the schemas discovered on the buses (streams/cli/discovered.py)."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("schemas", help="list or export the event schemas (JSON Schema 2020-12)")
    actions = parser.add_subparsers(dest="schemas_action", metavar="ACTION")
    export = actions.add_parser("export", help="write every schema version to a directory")
    export.add_argument("--out", default="schemas-export", help="target directory (default: ./schemas-export)")
    export.set_defaults(func=run)
    listing = actions.add_parser("list", help="print schema names and versions")
    listing.set_defaults(func=run)
    from streams.cli import discovered

    discovered.add_parser(actions)
    parser.set_defaults(func=run)


def run(args) -> int:
    import schemas

    action = getattr(args, "schemas_action", None)
    if action == "export":
        written = schemas.export(args.out)
        for path in written:
            print(path)
        print(f"wrote {len(written)} schema file(s) to {args.out}")
        return 0
    for name, versions in schemas.list_schemas().items():
        print(f"{name}: {', '.join(f'v{v}' for v in versions)}")
    return 0
