"""Athena/Glue `CREATE EXTERNAL TABLE` for an s3 target's layout, with partition projection.

Partition columns come from the path template: a Hive-style level `year=!{timestamp:yyyy}` is an
integer column of that name, a level `source={source}` an injected string column, and a
Firehose-style `!{timestamp:yyyy/MM/dd}` a `dt` date column with that format. Projection means
no crawler and no MSCK REPAIR: the lake is queryable the moment objects land.
"""
from __future__ import annotations

import re

from streams.targets.s3.formats import load_json_schema
from streams.targets.s3.layout import compile_template

ENVELOPE_COLUMNS = [
    ("version", "string"), ("id", "string"), ("detail-type", "string"), ("source", "string"),
    ("account", "string"), ("time", "string"), ("region", "string"), ("resources", "array<string>"),
    ("detail", "string"),
]
_TIME_RANGES = {  # Java letters -> (column type digits, range) for Hive-style time levels
    "yyyy": (4, "2020,2100"), "MM": (2, "1,12"), "dd": (2, "1,31"), "HH": (2, "0,23"), "mm": (2, "0,59"),
}


def column_name(name: str) -> str:
    """Athena column names: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def hive_type(schema: dict, parquet: bool) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "string":
        return "timestamp" if parquet and schema.get("format") == "date-time" else "string"
    if kind == "integer":
        return "bigint"
    if kind == "number":
        return "double"
    if kind == "boolean":
        return "boolean"
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array<{hive_type(schema['items'], parquet)}>"
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        inner = ",".join(f"{column_name(k)}:{hive_type(v, parquet)}" for k, v in schema["properties"].items())
        return f"struct<{inner}>"
    return "string"


def _partitions(template: str, partition_keys=None) -> tuple[str, list[tuple[str, dict]], str]:
    """(table location prefix, [(column, projection properties)], storage location template)."""
    compiled = compile_template(template, partition_keys=partition_keys)
    columns: list[tuple[str, dict]] = []
    out = []
    literal_prefix = None
    used: set[str] = set()
    for part in compiled.parts:
        if part.kind == "text":
            out.append(part.value)
            continue
        if literal_prefix is None:
            literal_prefix = "".join(out)
            literal_prefix = literal_prefix[: literal_prefix.rfind("/") + 1]
        preceding = "".join(out)
        level = preceding[preceding.rfind("/") + 1:]
        if level.endswith("=") and "=" not in level[:-1]:
            name = column_name(level[:-1])
        elif part.kind == "time":
            name = "dt"
        elif part.kind == "random":
            name = "shard"  # !{firehose:random-string}: its values are known only from the objects
        else:
            name = column_name(part.path[-1])
        while name in used:
            name += "_"
        used.add(name)
        if part.kind == "time":
            if part.java in _TIME_RANGES and level.endswith("="):
                digits, span = _TIME_RANGES[part.java]
                props = {"type": "integer", "range": span, "digits": str(digits)}
            else:
                unit = "HOURS" if "HH" in part.java else "DAYS"
                start = part.java.replace("yyyy", "2020").replace("MM", "01").replace("dd", "01").replace("HH", "00")
                props = {"type": "date", "format": part.java, "range": f"{start},NOW", "interval": "1",
                         "interval.unit": unit}
        else:
            props = {"type": "injected"}
        columns.append((name, props))
        out.append("${" + name + "}")
    if literal_prefix is None:
        literal_prefix = "".join(out)
    return literal_prefix, columns, "".join(out)


def create_table(settings, table: str) -> str:
    """The DDL for one s3 target's settings (`streams.targets.s3.target.S3Settings`)."""
    parquet = settings.format == "parquet"
    if settings.schema_ is not None:
        props = load_json_schema(settings.schema_)["properties"]
        columns = [(k, hive_type(v, parquet)) for k, v in props.items()]
    else:
        columns = ENVELOPE_COLUMNS
    base = settings.lake_url.rstrip("/") + "/"
    prefix, partitions, location = _partitions(settings.prefix, settings.partition_keys)
    part_names = {name for name, _ in partitions}
    lines = [f"CREATE EXTERNAL TABLE IF NOT EXISTS `{settings.database}`.`{table}` ("]
    cols, mappings = [], {}
    for name, typ in columns:
        col = column_name(name)
        if col in part_names:
            col += "_value"  # a partition column of the same name would shadow it
        if col != name:
            mappings[col] = name
        cols.append(f"  `{col}` {typ}")
    lines.append(",\n".join(cols))
    lines.append(")")
    if partitions:
        lines.append("PARTITIONED BY (" + ", ".join(f"`{n}` string" for n, _ in partitions) + ")")
    if parquet:
        lines.append("STORED AS PARQUET")
    else:
        lines.append("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'")
        serde = {"ignore.malformed.json": "true"}
        serde.update({f"mapping.{col}": name for col, name in mappings.items()})
        lines.append("WITH SERDEPROPERTIES (" + ", ".join(f"'{k}'='{v}'" for k, v in serde.items()) + ")")
    lines.append(f"LOCATION '{base}{prefix}'")
    tbl = {}
    if partitions:
        tbl["projection.enabled"] = "true"
        for name, props in partitions:
            for key, value in props.items():
                tbl[f"projection.{name}.{key}"] = value
        tbl["storage.location.template"] = base + location
    if parquet:
        tbl["parquet.compression"] = settings.codec.upper()
    lines.append("TBLPROPERTIES (\n" + ",\n".join(f"  '{k}'='{v}'" for k, v in tbl.items()) + "\n);")
    injected = [n for n, p in partitions if p["type"] == "injected"]
    note = ""
    if injected:
        note = (f"-- injected partition columns ({', '.join(injected)}) must be given in every query's WHERE clause\n")
    return note + "\n".join(lines)
