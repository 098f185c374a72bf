import pytest

from streams.config import ConfigError, load_config, parse_config


def test_defaults_and_environment_overrides():
    config = parse_config({"sources": [{"topic": "in"}]}, environ={
        "EVENTWEIR_CONSUMER__MAX_BATCH_RECORDS": "123",
        "EVENTWEIR_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
        "EVENTWEIR_PRODUCER__ENABLE_IDEMPOTENCE": "true",
    })
    assert config.consumer.max_batch_records == 123
    assert config.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert config.producer.enable_idempotence is True
    assert config.dead_letter.topic == "eventweir.dlq"


def test_every_problem_is_reported_with_its_key_path():
    with pytest.raises(ConfigError) as err:
        parse_config({
            "sources": [{"topic": "in", "kind": "telemetry"}],
            "consumer": {"max_batch_records": 0, "max_batch_size": 10},
            "rules": [{"name": "r", "targets": [{"id": "t", "type": "kafka"}]}],
        }, environ={})
    lines = str(err.value).splitlines()
    assert any(line.startswith("sources[0].kind: Input should be 'json'") and "'telemetry'" in line for line in lines)
    assert any(line.startswith("consumer.max_batch_records:") and "greater than or equal to 1" in line for line in lines)
    assert "consumer.max_batch_size: unknown key" in str(err.value)
    # a target type's own keys are checked by its Settings (streams.targets), naming rule and target
    from streams.targets import check_targets

    config = parse_config({"sources": [{"topic": "in"}], "rules": [
        {"name": "r", "targets": [{"id": "t", "type": "kafka"}, {"id": "u", "type": "kafak", "topic": "x"},
                                  {"id": "v", "type": "log", "topic": "x"}]}]}, environ={})
    with pytest.raises(ConfigError) as err:
        check_targets(config)
    assert str(err.value).splitlines() == [
        "rules[r].targets[t].topic: required key is missing",
        "rules[r].targets[u].type: expected one of kafka, bus, log, http, s3, timestream, influxdb, waitingroom, "
        "apidestination, got 'kafak'",
        "rules[r].targets[v].topic: unknown key (check the spelling; see the configuration reference in README.md)",
    ]
    # api.arn_map's targets too, so a wrong row stops the start rather than a script's PutTargets
    config = parse_config({"sources": [{"topic": "in"}], "api": {"arn_map": [
        {"arn": "arn:aws:sqs:*:*:*", "target": {"type": "kafka", "topic": "{name}"}},
        {"arn": "arn:aws:lambda:*", "target": {"type": "http", "uri": "https://x.example/"}}]}}, environ={})
    with pytest.raises(ConfigError) as err:
        check_targets(config)
    assert str(err.value).splitlines() == [
        "api.arn_map[1].target.uri: unknown key (check the spelling; see the configuration reference in README.md)",
    ]
    with pytest.raises(ConfigError, match=r"api\.arn_map\[0\]\.target: target needs a `type`"):
        parse_config({"sources": [{"topic": "in"}], "api": {"arn_map": [{"arn": "arn:aws:sqs:*", "target": {}}]}},
                     environ={})


def test_sources_are_required_and_rule_names_unique():
    with pytest.raises(ConfigError, match=r"sources: required key is missing"):
        parse_config({}, environ={})
    rule = {"name": "same", "targets": [{"id": "t", "type": "log"}]}
    with pytest.raises(ConfigError, match="rule names must be unique, repeated: same"):
        parse_config({"sources": [{"topic": "in"}], "rules": [rule, rule]}, environ={})


def test_missing_or_broken_files_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_a_bad_secret_is_named_but_never_echoed():
    for section, secret in (({"waitingroom": {"admin_token": "hunter2"}}, "hunter2"),
                            ({"kafka": {"sasl_password": 42}}, "42"),
                            ({"waitingroom": {"admin_token": "a" * 16, "key_encryption_key": "kek-too-short"}},
                             "kek-too-short"),
                            ({"waitingroom": {"admin_token": "a" * 16, "signing_keys": "-----BEGIN PRIVATE"}},
                             "BEGIN PRIVATE"),
                            ({"waitingroom": {"admin_token": "a" * 16, "challenge_key": "altcha-too-short"}},
                             "altcha-too-short")):
        with pytest.raises(ConfigError) as err:
            parse_config({"sources": [{"topic": "in"}], **section}, environ={})
        assert secret not in str(err.value) and "<redacted>" in str(err.value)


def test_the_waiting_room_section_is_typed_and_checks_its_rooms():
    config = parse_config({"sources": [{"topic": "in"}], "waitingroom": {"admin_token": "a" * 16}}, environ={})
    assert config.waitingroom.redis_url == "redis://127.0.0.1:6379/0" and config.waitingroom.rooms == {}
    with pytest.raises(ConfigError, match=r"^waitingroom\.rooms\.sale\.inlet\.policy: expected one of"):
        parse_config({"sources": [{"topic": "in"}], "waitingroom": {"admin_token": "a" * 16,
                                                                    "rooms": {"sale": {"inlet": {}}}}}, environ={})
    with pytest.raises(ConfigError, match=r"waitingroom\.redis_url: String should match pattern"):
        parse_config({"sources": [{"topic": "in"}], "waitingroom": {"admin_token": "a" * 16,
                                                                    "redis_url": "http://x"}}, environ={})


def test_variables_in_the_yaml_are_interpolated_with_defaults_files_and_escapes(tmp_path):
    # issue 21 item 18: "${API_TOKEN}" used to be loaded literally
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    config = parse_config({
        "kafka": {"bootstrap_servers": "${BROKER}:9092", "sasl_password": "${KAFKA_PASSWORD}",
                  "client_id": "${CLIENT:-eventweir}-${ZONE:-eu}"},
        "sources": [{"topic": "${TOPIC}"}],
        "api": {"bearer_tokens": ["${API_TOKEN}", "literal $${NOT_A_VAR}"]},
    }, environ={"BROKER": "kafka-0", "TOPIC": "orders", "KAFKA_PASSWORD_FILE": str(secret), "ZONE": "",
                "API_TOKEN": "tok"})
    assert config.kafka.bootstrap_servers == "kafka-0:9092" and config.sources[0].topic == "orders"
    assert config.kafka.sasl_password == "from-a-file" and config.kafka.client_id == "eventweir-eu"
    assert config.api.bearer_tokens == ["tok", "literal ${NOT_A_VAR}"]


def test_an_unset_variable_names_its_key_and_how_to_set_it():
    with pytest.raises(ConfigError, match=r"^sources\[0\]\.topic: environment variable TOPIC is not set "
                                          r"\(set it, or TOPIC_FILE, or write \$\{TOPIC:-default\}\)$"):
        parse_config({"sources": [{"topic": "${TOPIC}"}]}, environ={})


def test_an_override_can_come_from_a_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parse_config({"sources": [{"topic": "in"}]},
                          environ={"EVENTWEIR_KAFKA__SASL_PASSWORD_FILE": str(secret)})
    assert config.kafka.sasl_password == "s3cret"


def test_rule_arns_are_formed_as_aws_forms_them():
    # LocalStack test_events_inputs.py (AWS-validated): <aws.events.rule-arn> of a rule on a custom bus
    # is arn:aws:events:<region>:<account>:rule/<bus>/<rule>; the default bus has no <bus>/ part
    def prefix(bus):
        return parse_config({"sources": [{"topic": "in"}], "bus": bus}, environ={}).bus.rule_arn_prefix

    assert prefix({"account": "111111111111", "region": "us-east-1"}) == "arn:aws:events:us-east-1:111111111111:rule/"
    assert prefix({"name": "orders", "account": "111111111111", "region": "us-east-1"}) == \
        "arn:aws:events:us-east-1:111111111111:rule/orders/"


def test_buses_in_the_config_file_name_their_topic_and_their_rules():
    from streams.runtime.buses import all_buses, custom_bus_topics

    config = parse_config({"sources": [{"topic": "in", "kind": "envelope"}], "bus": {"topic": "in"},
                           "buses": [{"name": "orders"}, {"name": "audit", "topic": "audit.events"}],
                           "rules": [{"name": "r", "EventBusName": "orders"}, {"name": "d"}]}, environ={})
    buses = all_buses(config)
    assert {n: b.topic for n, b in buses.items()} == {"default": "in", "orders": "eventweir.bus.orders",
                                                      "audit": "audit.events"}
    assert custom_bus_topics(config, buses) == {"eventweir.bus.orders": "orders", "audit.events": "audit"}
    assert [config.bus_of(r) for r in config.rules] == ["orders", "default"]
    for bus in ("orders", "arn:aws:events:us-east-1:111111111111:event-bus/audit", "default"):  # names or ARNs
        parse_config({"sources": [{"topic": "in"}], "bus": {"topic": "in"}, "buses": [{"name": "orders"}, {"name": "audit"}],
                      "rules": [{"name": "r", "targets": [{"id": "b", "type": "bus", "bus": bus}]}]}, environ={})

    for data, message in [
        ({"rules": [{"name": "r", "EventBusName": "nope"}]}, "rules[0].EventBusName: no bus 'nope' (declare it under buses)"),
        ({"buses": [{"name": "a"}, {"name": "a"}]}, "bus names must be unique, repeated: a"),
        ({"buses": [{"name": "default"}]}, "buses: 'default' is the `bus:` section's bus"),
        ({"buses": [{"name": "a", "topic": "in"}]}, "buses: each bus needs a topic of its own, shared: in"),
        ({"buses": [{"name": "a/b"}]}, "buses[0].name"),
        # a bus target's bus, when no control topic could make it later; a topic of unmatched events
        ({"rules": [{"name": "r", "targets": [{"id": "b", "type": "bus", "bus": "nope"}]}]},
         "rules[0].targets[b].bus: no bus 'nope' (declare it under buses)"),
        ({"buses": [{"name": "a", "unmatched_topic": "in"}]},
         "buses[0].unmatched_topic: in is a topic the worker routes; give the unmatched events a topic of their own"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config({"sources": [{"topic": "in"}], "bus": {"topic": "in"}, **data}, environ={})
        assert message in str(err.value), str(err.value)
