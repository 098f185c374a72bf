"""`eventweir lake ddl`: Athena tables with partition projection that match the layout the sink writes."""
from __future__ import annotations

import yaml

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


def ddl(tmp_path, capsys, config=CONFIG) -> tuple[int, str, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["lake", "ddl", "-c", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_hive_layout_becomes_projected_integer_and_injected_partitions(tmp_path, capsys):
    code, out, _ = ddl(tmp_path, capsys)
    assert code == 0
    lake, iot = out.split("\n\n")
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `eventweir`.`to_lake_lake` (" in lake
    assert "PARTITIONED BY (`source` string, `year` string, `month` string, `day` string)" in lake
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
