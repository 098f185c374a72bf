"""Object encodings for the lake: JSON lines (none, gzip, zstd) and Parquet (pyarrow).

An encoder turns one object's rows into bytes. It is deterministic (same rows, same bytes: gzip
with mtime 0, fixed zstd level, Parquet without creation timestamps), because a replay after a
crash must rewrite an object with exactly the same content. Rows the Parquet schema cannot hold
are reported back by index so the sink dead-letters them instead of failing the whole object.
Encoders run in the sink's executor, never on the event loop.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass
class Encoded:
    body: bytes
    rejected: dict[int, str]  # row index -> why it could not be encoded


JSONL_EXTENSIONS = {"none": "jsonl", "gzip": "jsonl.gz", "zstd": "jsonl.zst"}  # by compression


class JsonLinesEncoder:
    def __init__(self, compression: str = "gzip", level: int | None = None):
        self.compression = compression
        self.level = level
        self.ext = JSONL_EXTENSIONS[compression]
        self.content_type = "application/x-ndjson"
        self.content_encoding = {"none": None, "gzip": "gzip", "zstd": "zstd"}[compression]
        if compression == "zstd":
            import zstandard  # noqa: F401  (fail at start-up when it is missing)

    def encode(self, payloads: list[bytes], events: list[Any] | None = None) -> Encoded:
        raw = b"\n".join(payloads) + b"\n"
        if self.compression == "gzip":
            raw = gzip.compress(raw, compresslevel=self.level or 6, mtime=0)
        elif self.compression == "zstd":
            import zstandard

            raw = zstandard.ZstdCompressor(level=self.level or 3).compress(raw)
        return Encoded(raw, {})


def decode_jsonl(body: bytes, ext: str) -> list[bytes]:
    """The records of a JSON-lines object the encoder above wrote (its extension says the compression)."""
    if ext == JSONL_EXTENSIONS["gzip"]:
        body = gzip.decompress(body)
    elif ext == JSONL_EXTENSIONS["zstd"]:
        import zstandard

        body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
    elif ext != JSONL_EXTENSIONS["none"]:
        raise ValueError(f"not a JSON-lines object: .{ext}")
    return [line for line in body.split(b"\n") if line]


# --- Parquet ------------------------------------------------------------------------------------

def arrow_type(schema: dict, where: str = "$"):
    """The Arrow type for a JSON Schema node. Unknown or mixed types become JSON text columns."""
    import pyarrow as pa

    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind == "string":
        if schema.get("format") == "date-time":
            return pa.timestamp("ms", tz="UTC")
        return pa.string()
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "boolean":
        return pa.bool_()
    if kind == "array":
        items = schema.get("items")
        return pa.list_(arrow_type(items, where + "[]") if isinstance(items, dict) else pa.string())
    if kind == "object" and isinstance(schema.get("properties"), dict):
        return pa.struct([pa.field(name, arrow_type(sub, f"{where}.{name}")) for name, sub in schema["properties"].items()])
    return pa.string()  # free-form: stored as JSON text


def arrow_schema(json_schema: dict):
    import pyarrow as pa

    props = json_schema.get("properties")
    if json_schema.get("type") not in ("object", None) or not isinstance(props, dict) or not props:
        raise ValueError("the Parquet schema must be a JSON Schema object with `properties`")
    return pa.schema([pa.field(name, arrow_type(sub, name)) for name, sub in props.items()])


def load_json_schema(value: str | dict) -> dict:
    if isinstance(value, dict):
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"JSON Schema file {value!r} not found")
    return orjson.loads(path.read_bytes())


def _conform(value, typ):
    """Shape a decoded JSON value for its Arrow column (JSON text for free-form, datetimes parsed)."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    if pa.types.is_timestamp(typ):
        from streams.targets.s3.layout import parse_time

        return parse_time(value)
    if pa.types.is_struct(typ):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return {f.name: _conform(value.get(f.name), f.type) for f in typ}
    if pa.types.is_list(typ):
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return [_conform(v, typ.value_type) for v in value]
    if pa.types.is_integer(typ) and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"expected an integer, got {value!r}")
    if pa.types.is_floating(typ) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"expected a number, got {value!r}")
    if pa.types.is_boolean(typ) and not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value


class ParquetEncoder:
    ext = "parquet"
    content_type = "application/vnd.apache.parquet"
    content_encoding = None

    def __init__(self, json_schema: dict | None, compression: str = "zstd", row_group_rows: int = 65536):
        import pyarrow  # noqa: F401

        self.schema = arrow_schema(json_schema) if json_schema else None
        self.compression = compression
        self.row_group_rows = row_group_rows

    def encode(self, payloads: list[bytes], events: list[Any] | None = None) -> Encoded:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows, rejected = [], {}
        for i, payload in enumerate(payloads):
            try:
                row = orjson.loads(payload)
                if not isinstance(row, dict):
                    raise TypeError(f"expected a JSON object, got {type(row).__name__}")
                if self.schema is not None:
                    row = {f.name: _conform(row.get(f.name), f.type) for f in self.schema}
                rows.append(row)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                rejected[i] = f"{type(exc).__name__}: {exc}"
        try:
            table = pa.Table.from_pylist(rows, schema=self.schema)
        except (pa.ArrowException, TypeError, ValueError):
            # find the offending rows one by one; the rest still make the object
            kept = []
            index = [i for i in range(len(payloads)) if i not in rejected]
            for i, row in zip(index, rows):
                try:
                    pa.Table.from_pylist([row], schema=self.schema)
                    kept.append(row)
                except (pa.ArrowException, TypeError, ValueError) as exc:
                    rejected[i] = f"{type(exc).__name__}: {exc}"
            table = pa.Table.from_pylist(kept, schema=self.schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression=self.compression, row_group_size=self.row_group_rows,
                       write_statistics=True)
        return Encoded(sink.getvalue(), rejected)


def make_encoder(fmt: str, compression: str, json_schema: dict | None, row_group_rows: int):
    if fmt == "jsonl":
        return JsonLinesEncoder(compression)
    return ParquetEncoder(json_schema, compression, row_group_rows)
