"""Tables over an s3 target's layout, for Athena (Glue), Trino and DuckDB.

Partition columns come from the path template: a Hive-style level `year=!{timestamp:yyyy}` is an
integer column of that name, a level `source={source}` an injected string column, and a
Firehose-style `!{timestamp:yyyy/MM/dd}` a `dt` date column with that format. Athena and Trino get
partition projection (no crawler, no MSCK REPAIR: the lake is queryable the moment objects land);
DuckDB gets a view over `read_json`/`read_parquet` with `hive_partitioning`.

Every type is declared, never left to a reader's inference, because inference depends on the data
a reader happens to sample: DuckDB types `month=12` as BIGINT but `day=06` as VARCHAR (a leading
zero does not survive a cast, so it keeps text), and an `id` column whose first sampled rows are
UUIDs becomes UUID and then fails on a session event's `<uuid>.start`. So: time levels are integer
columns everywhere (their text stays zero-padded, as Firehose writes it and projection's `digits`
expects), `id` is a string, and the free-form `detail` is JSON text (DuckDB: JSON).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from streams.targets.s3.formats import JSONL_EXTENSIONS, load_json_schema
from streams.targets.s3.layout import compile_template

DIALECTS = ("athena", "trino", "duckdb")

# A column's type, whatever the engine: a scalar name from _SCALARS, ("array", item) or
# ("struct", ((field name, type), ...)). Each dialect spells it its own way.
ColumnType = str | tuple
_SCALARS = {  # name -> (Athena/Hive, Trino, DuckDB)
    "string": ("string", "varchar", "VARCHAR"),
    "json": ("string", "varchar", "JSON"),  # free-form: JSON text; DuckDB has a JSON type for it
    "int": ("int", "integer", "INTEGER"),
    "bigint": ("bigint", "bigint", "BIGINT"),
    "double": ("double", "double", "DOUBLE"),
    "boolean": ("boolean", "boolean", "BOOLEAN"),
    "timestamp": ("timestamp", "timestamp(3)", "TIMESTAMPTZ"),
}

ENVELOPE_COLUMNS: list[tuple[str, ColumnType]] = [
    ("version", "string"), ("id", "string"), ("detail-type", "string"), ("source", "string"),
    ("account", "string"), ("time", "string"), ("region", "string"), ("resources", ("array", "string")),
    ("detail", "json"),
]
_TIME_RANGES = {  # Java letters -> (digits, range) for Hive-style time levels
    "yyyy": (4, "2020,2100"), "MM": (2, "1,12"), "dd": (2, "1,31"), "HH": (2, "0,23"), "mm": (2, "0,59"),
}
_HIVE_LEVEL = re.compile(r"^([^=/]+)=\$\{(\w+)\}$")


def column_name(name: str) -> str:
    """Athena column names: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def column_type(schema: dict, parquet: bool) -> ColumnType:
    """The type of a JSON Schema node, as the s3 target writes it (formats.arrow_type for Parquet)."""
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
        return ("array", column_type(schema["items"], parquet))
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return ("struct", tuple((k, column_type(v, parquet)) for k, v in schema["properties"].items()))
    return "string"


def athena_type(typ: ColumnType) -> str:
    if isinstance(typ, str):
        return _SCALARS[typ][0]
    if typ[0] == "array":
        return f"array<{athena_type(typ[1])}>"
    return "struct<" + ",".join(f"{column_name(k)}:{athena_type(v)}" for k, v in typ[1]) + ">"


def trino_type(typ: ColumnType) -> str:
    if isinstance(typ, str):
        return _SCALARS[typ][1]
    if typ[0] == "array":
        return f"array({trino_type(typ[1])})"
    return "row(" + ", ".join(f"{_quote(k)} {trino_type(v)}" for k, v in typ[1]) + ")"


def duckdb_type(typ: ColumnType) -> str:
    if isinstance(typ, str):
        return _SCALARS[typ][2]
    if typ[0] == "array":
        return f"{duckdb_type(typ[1])}[]"
    return "STRUCT(" + ", ".join(f"{_quote(k)} {duckdb_type(v)}" for k, v in typ[1]) + ")"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Partition:
    name: str
    projection: dict[str, str]  # Athena's projection.<name>.* properties
    levels: int  # path levels one value spans: !{timestamp:yyyy/MM/dd} spans 3

    @property
    def type(self) -> ColumnType:
        return "int" if self.projection["type"] == "integer" else "string"


@dataclass(frozen=True)
class Layout:
    prefix: str  # the literal part of the template: the table's location under the lake
    partitions: list[Partition]
    template: str  # the path template with ${column} for each partition value

    def hive_levels(self) -> dict[str, str]:
        """{column: level name} of the `name=${column}` levels, which DuckDB reads from the path."""
        out = {}
        for level in self.template.split("/"):
            match = _HIVE_LEVEL.match(level)
            if match and any(p.name == match.group(2) and p.levels == 1 for p in self.partitions):
                out[match.group(2)] = match.group(1)
        return out

    def glob(self) -> str:
        """The template with `*` for each level a partition value spans."""
        out = self.template
        for p in self.partitions:
            out = out.replace("${" + p.name + "}", "/".join(["*"] * p.levels))
        return out


def layout(template: str, partition_keys=None) -> Layout:
    compiled = compile_template(template, partition_keys=partition_keys)
    partitions: list[Partition] = []
    out: list[str] = []
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
        partitions.append(Partition(name, props, part.java.count("/") + 1 if part.kind == "time" else 1))
        out.append("${" + name + "}")
    if literal_prefix is None:
        literal_prefix = "".join(out)
    return Layout(literal_prefix, partitions, "".join(out))


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    columns: list[tuple[str, ColumnType]]  # (field name in the records, type)
    layout: Layout
    base: str  # the lake's URL, ending in /
    parquet: bool
    codec: str
    ext: str  # the objects' file extension
    key_level: bool = False  # event_time objects sit one level below the prefix, in their key's folder

    @classmethod
    def of(cls, settings, name: str) -> Table:
        """The table for one s3 target's settings (`streams.targets.s3.target.S3Settings`)."""
        parquet = settings.format == "parquet"
        if settings.schema_ is not None:
            props = load_json_schema(settings.schema_)["properties"]
            columns = [(k, column_type(v, parquet)) for k, v in props.items()]
        else:
            columns = ENVELOPE_COLUMNS
        ext = "parquet" if parquet else JSONL_EXTENSIONS[settings.codec]
        return cls(settings.database, name, columns, layout(settings.prefix, settings.partition_keys),
                   settings.lake_url.rstrip("/") + "/", parquet, settings.codec, ext,
                   getattr(settings, "event_time", None) is not None)


def create_table(settings, table: str, dialect: str = "athena") -> str:
    """The DDL for one s3 target's settings in `dialect` (one of DIALECTS)."""
    render = {"athena": athena, "trino": trino, "duckdb": duckdb}[dialect]
    return render(Table.of(settings, table))


def athena(t: Table) -> str:
    partitions = t.layout.partitions
    part_names = {p.name for p in partitions}
    lines = [f"CREATE EXTERNAL TABLE IF NOT EXISTS `{t.database}`.`{t.name}` ("]
    cols, mappings = [], {}
    for name, typ in t.columns:
        col = column_name(name)
        if col in part_names:
            col += "_value"  # a partition column of the same name would shadow it
        if col != name:
            mappings[col] = name
        cols.append(f"  `{col}` {athena_type(typ)}")
    lines.append(",\n".join(cols))
    lines.append(")")
    if partitions:
        lines.append("PARTITIONED BY (" + ", ".join(f"`{p.name}` {athena_type(p.type)}" for p in partitions) + ")")
    if t.parquet:
        lines.append("STORED AS PARQUET")
    else:
        lines.append("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'")
        serde = {"ignore.malformed.json": "true"}
        serde.update({f"mapping.{col}": name for col, name in mappings.items()})
        lines.append("WITH SERDEPROPERTIES (" + ", ".join(f"'{k}'='{v}'" for k, v in serde.items()) + ")")
    lines.append(f"LOCATION '{t.base}{t.layout.prefix}'")
    tbl = {}
    if partitions:
        tbl["projection.enabled"] = "true"
        for p in partitions:
            for key, value in p.projection.items():
                tbl[f"projection.{p.name}.{key}"] = value
        tbl["storage.location.template"] = t.base + t.layout.template
    if t.parquet:
        tbl["parquet.compression"] = t.codec.upper()
    lines.append("TBLPROPERTIES (\n" + ",\n".join(f"  '{k}'='{v}'" for k, v in tbl.items()) + "\n);")
    return _injected_note(t) + "\n".join(lines)


def trino(t: Table) -> str:
    """Trino's Hive connector, which reads Athena's projection properties under its own names.

    Trino cannot set the serde's `mapping.*` properties, so columns keep their JSON keys' names
    (`"detail-type"`), and a record field named like a partition column (`source`) is left to the
    partition column, which holds the same value."""
    partitions = t.layout.partitions
    part_names = {p.name for p in partitions}
    cols = [f"  {_quote(name)} {trino_type(typ)}" for name, typ in t.columns if name not in part_names]
    for p in partitions:
        props = {"partition_projection_type": _text(p.projection["type"].upper())}
        if "range" in p.projection:
            props["partition_projection_range"] = "ARRAY[" + ", ".join(
                _text(v) for v in p.projection["range"].split(",")) + "]"
        if "digits" in p.projection:
            props["partition_projection_digits"] = p.projection["digits"]
        if "format" in p.projection:
            props["partition_projection_format"] = _text(p.projection["format"])
            props["partition_projection_interval"] = p.projection["interval"]
            props["partition_projection_interval_unit"] = _text(p.projection["interval.unit"])
        spec = ", ".join(f"{k} = {v}" for k, v in props.items())
        cols.append(f"  {_quote(p.name)} {trino_type(p.type)} WITH ({spec})")
    table = {"format": _text("PARQUET" if t.parquet else "OPENX_JSON"),
             "external_location": _text(t.base + t.layout.prefix)}
    if partitions:
        table["partitioned_by"] = "ARRAY[" + ", ".join(_text(p.name) for p in partitions) + "]"
        table["partition_projection_enabled"] = "true"
        table["partition_projection_location_template"] = _text(t.base + t.layout.template)
    return (_injected_note(t)
            + f"CREATE TABLE IF NOT EXISTS {_quote(t.database)}.{_quote(t.name)} (\n" + ",\n".join(cols) + "\n)\n"
            + "WITH (\n" + ",\n".join(f"  {k} = {v}" for k, v in table.items()) + "\n);")


def duckdb(t: Table) -> str:
    """A view over the objects: `read_json` with every column's type given (no sampling), or
    `read_parquet`, and `hive_types` for the `name=value` levels of the path. Levels that are not
    `name=value` (a Firehose-style `!{timestamp:yyyy/MM/dd}`) are matched but give no column."""
    hive = t.layout.hive_levels()  # column -> level name
    types = {p.name: p.type for p in t.layout.partitions}
    location = t.base + t.layout.glob() + ("*/" if t.key_level else "")
    location += ("" if location.endswith("*") else "*") + "." + t.ext
    args = [_text(location)]
    if not t.parquet:
        args.append("format = 'newline_delimited'")
        args.append("columns = {" + ", ".join(f"{_text(n)}: {_text(duckdb_type(typ))}" for n, typ in t.columns) + "}")
    if hive:
        args.append("hive_partitioning = true")
        args.append("hive_types = {" + ", ".join(
            f"{_text(level)}: {_text(duckdb_type(types[col]))}" for col, level in hive.items()) + "}")
    else:
        args.append("hive_partitioning = false")
    levels = set(hive.values())
    # the same names as the Athena table's; a field named like a level is that level's column in DuckDB
    select = [_quote(name) + ("" if column_name(name) == name else f" AS {column_name(name)}")
              for name, _ in t.columns if name not in levels]
    select += [_quote(level) + ("" if level == col else f" AS {col}") for col, level in hive.items()]
    reader = "read_parquet" if t.parquet else "read_json"
    note = ""
    if t.base.startswith("s3://"):
        note = ("-- s3:// needs DuckDB's httpfs extension and credentials, e.g.\n"
                "-- CREATE SECRET (TYPE s3, PROVIDER credential_chain);\n")
    return (note + f"CREATE SCHEMA IF NOT EXISTS {_quote(t.database)};\n"
            f"CREATE OR REPLACE VIEW {_quote(t.database)}.{_quote(t.name)} AS\n"
            f"SELECT {', '.join(select)}\n"
            f"FROM {reader}(\n  " + ",\n  ".join(args) + "\n);")


def _injected_note(t: Table) -> str:
    injected = [p.name for p in t.layout.partitions if p.projection["type"] == "injected"]
    if not injected:
        return ""
    return f"-- injected partition columns ({', '.join(injected)}) must be given in every query's WHERE clause\n"
