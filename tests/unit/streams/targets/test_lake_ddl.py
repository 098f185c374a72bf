"""`eventweir lake ddl`: Athena, Trino and DuckDB tables that match the layout the sink writes."""
from __future__ import annotations

import pytest
import sqlglot
import yaml
from sqlglot import exp

from streams.cli import main

CONFIG = {
    "sources": [{"topic": "in"}],
    "rules": [{"name": "to-lake", "targets": [
        {"id": "lake", "type": "s3", "bucket": "my-lake",
         "prefix": "events/source={source}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"},
        {"id": "iot", "type": "s3", "url": "s3://my-lake", "format": "parquet", "table": "iot_readings",
         "schema": {"type": "object", "properties": {"time": {"type": "string", "format": "date-time"},
                                                     "detail": {"type": "object", "properties": {"temp": {"type": "number"}}}}},
         "prefix": "iot/!{timestamp:yyyy/MM/dd/HH}/{detail.device_id}/"},
        {"id": "out", "type": "kafka", "topic": "x"},
    ]}],
}


def ddl(tmp_path, capsys, config=CONFIG, dialect: str | None = None) -> tuple[int, str, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["lake", "ddl", "-c", str(path)] + (["--dialect", dialect] if dialect else []))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hive_layout_becomes_projected_integer_and_injected_partitions(tmp_path, capsys):
    code, out, _ = ddl(tmp_path, capsys)
    assert code == 0
    lake, iot = out.split("\n\n")
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `eventweir`.`to_lake_lake` (" in lake
    # time levels are integers (their zero-padded text is what projection's digits produce)
    assert "PARTITIONED BY (`source` string, `year` int, `month` int, `day` int)" in lake
    assert "'mapping.detail_type'='detail-type'" in lake  # Athena names cannot hold dashes
    assert "LOCATION 's3://my-lake/events/'" in lake
    assert "'projection.month.range'='1,12'" in lake and "'projection.source.type'='injected'" in lake
    assert ("'storage.location.template'='s3://my-lake/events/source=${source}/year=${year}/month=${month}/day=${day}/'"
            in lake)


def test_firehose_timestamp_becomes_a_date_projection_and_parquet_types_follow_the_schema(tmp_path, capsys):
    _, out, _ = ddl(tmp_path, capsys)
    iot = out.split("\n\n")[1]
    assert "`eventweir`.`iot_readings`" in iot and "STORED AS PARQUET" in iot
    assert "`time` timestamp" in iot and "`detail` struct<temp:double>" in iot
    assert "'projection.dt.format'='yyyy/MM/dd/HH'" in iot and "'projection.dt.interval.unit'='HOURS'" in iot
    assert "'storage.location.template'='s3://my-lake/iot/${dt}/${device_id}/'" in iot


def test_bad_target_settings_and_no_lake_are_reported(tmp_path, capsys):
    bad = yaml.safe_load(yaml.safe_dump(CONFIG))
    bad["rules"][0]["targets"][0]["formt"] = "jsonl"
    code, _, err = ddl(tmp_path, capsys, bad)
    assert code == 2 and "rules[to-lake].targets[lake].formt: unknown key" in err
    none = {"sources": [{"topic": "in"}], "rules": []}
    code, _, err = ddl(tmp_path, capsys, none)
    assert code == 1 and "no s3 targets" in err


SQLGLOT_DIALECT = {"athena": "athena", "trino": "trino", "duckdb": "duckdb"}


def parsed(sql: str, dialect: str) -> list[exp.Expression]:
    """Every statement, parsed strictly: a statement sqlglot cannot read raises or falls back to a Command."""
    statements = [s for s in sqlglot.parse(sql, read=SQLGLOT_DIALECT[dialect], error_level=sqlglot.ErrorLevel.RAISE)
                  if s is not None]
    assert statements and all(isinstance(s, exp.Create) for s in statements), [type(s) for s in statements]
    return statements


def column_types(create: exp.Create, dialect: str) -> dict[str, str]:
    write = "hive" if dialect == "athena" else dialect  # sqlglot writes Athena's DML (Trino) types otherwise
    return {c.name: c.args["kind"].sql(write) for c in create.find_all(exp.ColumnDef)}


@pytest.mark.parametrize("dialect", ["athena", "trino", "duckdb"])
def test_each_dialect_parses_in_sqlglot(tmp_path, capsys, dialect):
    code, out, err = ddl(tmp_path, capsys, dialect=None if dialect == "athena" else dialect)
    assert code == 0, err
    statements = parsed(out, dialect)
    assert len(statements) == (4 if dialect == "duckdb" else 2)  # duckdb: CREATE SCHEMA and a view per target


def test_athena_is_the_default_dialect(tmp_path, capsys):
    assert ddl(tmp_path, capsys)[1] == ddl(tmp_path, capsys, dialect="athena")[1]


def test_athena_and_trino_declare_ids_as_strings_and_time_levels_as_integers(tmp_path, capsys):
    athena = column_types(parsed(ddl(tmp_path, capsys)[1], "athena")[0], "athena")
    assert athena["id"] == "STRING" and athena["detail"] == "STRING"
    assert {athena[c] for c in ("year", "month", "day")} == {"INT"} and athena["source"] == "STRING"
    trino = column_types(parsed(ddl(tmp_path, capsys, dialect="trino")[1], "trino")[0], "trino")
    assert trino["id"] == "VARCHAR" and trino["detail-type"] == "VARCHAR"
    assert {trino[c] for c in ("year", "month", "day")} == {"INTEGER"} and trino["source"] == "VARCHAR"
    assert list(trino)[-4:] == ["source", "year", "month", "day"]  # Trino wants partition columns last


def test_trino_carries_the_projection_as_table_and_column_properties(tmp_path, capsys):
    _, out, _ = ddl(tmp_path, capsys, dialect="trino")
    lake, iot = out.split("\n\n")
    assert "format = 'OPENX_JSON'" in lake and "external_location = 's3://my-lake/events/'" in lake
    assert "partitioned_by = ARRAY['source', 'year', 'month', 'day']" in lake
    assert ("\"month\" integer WITH (partition_projection_type = 'INTEGER', partition_projection_range = "
            "ARRAY['1', '12'], partition_projection_digits = 2)") in lake
    assert ("partition_projection_location_template = "
            "'s3://my-lake/events/source=${source}/year=${year}/month=${month}/day=${day}/'") in lake
    assert "format = 'PARQUET'" in iot and '"detail" row("temp" double)' in iot and '"time" timestamp(3)' in iot
    assert "partition_projection_format = 'yyyy/MM/dd/HH'" in iot and "partition_projection_interval_unit = 'HOURS'" in iot


def test_duckdb_view_declares_every_type_instead_of_sampling(tmp_path, capsys):
    _, out, _ = ddl(tmp_path, capsys, dialect="duckdb")
    lake, iot = out.split("\n\n")
    assert "read_json(\n  's3://my-lake/events/source=*/year=*/month=*/day=*/*.jsonl.gz'" in lake
    assert "'id': 'VARCHAR'" in lake and "'detail': 'JSON'" in lake
    assert "hive_types = {'source': 'VARCHAR', 'year': 'INTEGER', 'month': 'INTEGER', 'day': 'INTEGER'}" in lake
    assert '"detail-type" AS detail_type' in lake  # the same column names as the Athena table
    assert "CREATE SECRET" in lake  # s3:// needs httpfs and credentials
    # !{timestamp:yyyy/MM/dd/HH} spans four levels, none of them name=value: matched, not columns
    assert "read_parquet(\n  's3://my-lake/iot/*/*/*/*/*/*.parquet',\n  hive_partitioning = false" in iot
