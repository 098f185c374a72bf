"""`eventweir schemas discovered [--export DIR --format jsonschema|openapi3]`: the schemas schema
discovery inferred (a bus's `discovery:` section), read from the registry topic. Lists each type's
versions, or writes its latest version, one file per type, as EventBridge's registry exports them
(JSONSchemaDraft4 or OpenApi3) under EventBridge's name for it, `<source>@<DetailType>.json`.
"""
from __future__ import annotations

import os
import sys

DEFAULT_TOPIC = "eventweir.schemas.discovered"


def add_parser(actions) -> None:
    """The `discovered` action of `eventweir schemas` (streams/cli/schemas.py)."""
    p = actions.add_parser("discovered", help="list or export the schemas discovered on the buses")
    p.add_argument("--export", metavar="DIR", help="write the latest version of each type to DIR, one file per type")
    p.add_argument("--format", choices=("jsonschema", "openapi3"), default="jsonschema",
                   help="with --export: JSON Schema draft-04 (default) or OpenAPI 3.0")
    p.add_argument("--topic", help=f"the registry topic (default: the config's bus.discovery.topic, else {DEFAULT_TOPIC})")
    p.add_argument("-c", "--config", default=os.environ.get("EVENTWEIR_CONFIG"),
                   help="worker config (for kafka settings and the topic); else --bootstrap-servers")
    p.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    p.set_defaults(func=run)


def _registry_topic(config) -> str:
    for discovery in [config.bus.discovery, *(b.discovery for b in config.buses)]:
        if discovery.enabled:
            return discovery.topic
    return config.bus.discovery.topic


def export(entries: dict, directory: str, form: str) -> list[str]:
    """Write each type's latest version; returns the paths written."""
    import orjson

    from processors.discovery import schema_name, to_jsonschema, to_openapi3

    render = to_openapi3 if form == "openapi3" else to_jsonschema
    os.makedirs(directory, exist_ok=True)
    written, taken = [], set()
    for (source, detail_type), versions in sorted(entries.items()):
        if not versions:
            continue
        latest = versions[-1]
        name, n = schema_name(source, detail_type), 1
        while name.lower() in taken:  # two types that make the same file name (case-insensitive file systems too)
            n += 1
            name = f"{schema_name(source, detail_type)}-{n}"
        taken.add(name.lower())
        path = os.path.join(directory, name + ".json")
        with open(path, "wb") as f:
            f.write(orjson.dumps(render(source, detail_type, latest["schema"], int(latest["version"])),
                                 option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        written.append(path)
    return written


def run(args) -> int:
    import asyncio

    options = {"bootstrap_servers": args.bootstrap_servers}
    topic = args.topic
    if args.config:
        from streams.config import ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"eventweir schemas: invalid configuration:\n  {exc}", file=sys.stderr)
            return 2
        options = config.kafka.client_options()
        topic = topic or _registry_topic(config)
    if not options.get("bootstrap_servers"):
        print("eventweir schemas: no Kafka given; pass -c config.yaml or --bootstrap-servers", file=sys.stderr)
        return 2
    topic = topic or DEFAULT_TOPIC
    from streams.kafka.discovered import read_registry

    try:
        entries = asyncio.run(read_registry(options, topic))
    except TimeoutError as exc:
        print(f"eventweir schemas: {exc} (is discovery on for a bus? README, Schema discovery)", file=sys.stderr)
        return 1
    if args.export:
        written = export(entries, args.export, args.format)
        for path in written:
            print(path)
        print(f"wrote {len(written)} schema file(s) ({args.format}) to {args.export}")
        return 0
    for (source, detail_type), versions in sorted(entries.items()):
        if versions:
            print(f"{source} / {detail_type}: {', '.join('v' + str(v['version']) for v in versions)} "
                  f"(latest {versions[-1].get('created', '?')})")
    if not entries:
        print(f"no schemas discovered yet on {topic}")
    return 0
