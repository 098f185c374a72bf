"""`eventweir lake ddl -c config.yaml [--dialect athena|trino|duckdb]`: tables over the configured s3
lake targets, for Athena/Glue (the default), Trino's Hive connector, or a local DuckDB."""
from __future__ import annotations

import os
import sys

from streams.targets.s3.ddl import DIALECTS


def register(sub) -> None:
    p = sub.add_parser("lake", help="data-lake helpers for the s3 targets")
    lake = p.add_subparsers(dest="lake_command", metavar="ACTION")
    ddl = lake.add_parser("ddl", help="print the statements that define a table over each s3 target's objects")
    ddl.add_argument("-c", "--config", default=os.environ.get("EVENTWEIR_CONFIG"),
                     help="YAML config file (or $EVENTWEIR_CONFIG)")
    ddl.add_argument("--rule", help="only the targets of this rule")
    ddl.add_argument("--dialect", choices=DIALECTS, default="athena",
                     help="athena (Glue, partition projection; the default), trino (Hive connector, partition "
                          "projection) or duckdb (a view over read_json/read_parquet with hive_partitioning)")
    p.set_defaults(func=run)


def ddl_statements(config, dialect: str = "athena", rule_name: str | None = None) -> list[str]:
    """One commented statement block per s3 target of the config (raises ConfigError on bad settings)."""
    from streams.config.targets import parse_settings
    from streams.targets.s3.ddl import column_name, create_table
    from streams.targets.s3.target import S3Settings

    statements = []
    for rule in config.rules:
        if rule_name and rule.name != rule_name:
            continue
        for target in rule.targets:
            if target.type != "s3":
                continue
            settings = parse_settings(S3Settings, rule.name, target)
            table = settings.table or column_name(f"{rule.name}_{target.id}")
            statements.append(f"-- rule {rule.name}, target {target.id}\n{create_table(settings, table, dialect)}")
    return statements


def run(args) -> int:
    from streams.config import ConfigError, load_config

    if getattr(args, "lake_command", None) != "ddl":
        print("eventweir lake: give an action, e.g. `eventweir lake ddl -c config.yaml`", file=sys.stderr)
        return 2
    if not args.config:
        print("eventweir lake ddl: no config given; pass -c config.yaml or set EVENTWEIR_CONFIG", file=sys.stderr)
        return 2
    try:
        statements = ddl_statements(load_config(args.config), args.dialect, args.rule)
    except ConfigError as exc:
        print("eventweir: invalid configuration:\n  " + str(exc).replace("\n", "\n  "), file=sys.stderr)
        return 2
    if not statements:
        print("eventweir lake ddl: the config has no s3 targets" + (f" in rule {args.rule!r}" if args.rule else ""),
              file=sys.stderr)
        return 1
    print("\n\n".join(statements))
    return 0
