"""The worker's configuration: one YAML file plus EVENTWEIR_* environment overrides.

Everything is validated at start-up. A bad value is reported with its key path and what was
expected (`consumer.max_batch_records: expected an integer, got 'lots'`), and the worker does not
start. Overrides use `__` between levels: EVENTWEIR_KAFKA__BOOTSTRAP_SERVERS=host:9092.
"""
from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.config.discovery import DiscoverySettings
from streams.config.enrich import STAGES, parse_stage
from streams.config.env import InterpolationError, env_overrides, interpolate
from streams.config.errors import ConfigError, describe_error
from streams.config.mask import MaskSettings


def _no_repeats(items: list, attribute: str, rule: str) -> list:
    values = [getattr(item, attribute) for item in items]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{rule}, repeated: {', '.join(repeated)}")
    return items


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(Section):
    """Connection settings shared by every Kafka client the worker makes."""

    bootstrap_servers: str = Field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        description="Comma-separated host:port list (defaults to $KAFKA_BOOTSTRAP_SERVERS).",
    )
    group_id: str = Field("eventweir", description="Consumer group; one worker = one member.")
    client_id: str = "eventweir"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None

    def client_options(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id,
            "security_protocol": self.security_protocol, "sasl_mechanism": self.sasl_mechanism or "PLAIN",
            "sasl_plain_username": self.sasl_username, "sasl_plain_password": self.sasl_password,
        }


class ConsumerSettings(Section):
    max_batch_records: int = Field(5000, ge=1, description="Records per getmany() batch.")
    fetch_timeout_ms: int = Field(200, ge=1)
    max_partition_fetch_bytes: int = Field(4 << 20, ge=1024)
    fetch_max_bytes: int = Field(32 << 20, ge=1024)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    commit_interval_ms: int = Field(1000, ge=10, description="How often acknowledged offsets are committed.")
    changelog_interval_ms: int = Field(
        1000, ge=0, description="Stateful stages (windows, sequence, sessions, ...): how long state changes are "
        "gathered before they are written to their changelog topics, each changed key once; their sources' offsets "
        "are committed once that is written. Longer: fewer changelog records; shorter: fewer records to process "
        "again after a crash. A caught-up worker writes at once.")
    session_timeout_ms: int = Field(10000, ge=1000)
    heartbeat_interval_ms: int = Field(3000, ge=100)
    max_poll_interval_ms: int = Field(300000, ge=1000)


class ProducerSettings(Section):
    @field_validator("acks", mode="before")
    @classmethod
    def _acks_as_text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    linger_ms: int = Field(5, ge=0)
    max_batch_bytes: int = Field(1 << 20, ge=1024, description="Bytes per produced record batch.")
    max_request_size: int = Field(8 << 20, ge=1024)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    acks: Literal["all", "1", "0"] = Field("all", description="Broker acknowledgements per produce: all (durable), 1 or 0.")
    enable_idempotence: bool = Field(
        False, description="Use on real Kafka; Tansu (the embedded broker) does not support it."
    )
    request_timeout_ms: int = Field(30000, ge=100)


class RuntimeSettings(Section):
    max_in_flight: int = Field(
        100_000, ge=1,
        description="Deliveries a target may hold unacknowledged before the partitions feeding it pause.",
    )
    max_in_flight_total: int = Field(
        200_000, ge=1,
        description="Deliveries all targets together may hold unacknowledged before every partition pauses: "
        "the worker's memory bound (about 1 KB a delivery), whatever the number of targets.",
    )
    shutdown_grace_s: float = Field(25.0, gt=0, description="SIGTERM drain budget; keep under the pod's grace period.")
    ready_max_lag: int | None = Field(
        None, ge=0,
        description="If set, /readyz reports not ready while a partition lags more than this. Off by default: on "
        "Kubernetes an unready worker leaves the Service and blocks rollouts, which does not help it catch up.",
    )


class PublicListenerSettings(Section):
    host: str = Field("0.0.0.0", description="Address of the public listener.")
    port: int = Field(8081, ge=0, le=65535, description="Port of the public listener.")


class HttpSettings(Section):
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535, description="The private listener: /healthz, /readyz, /metrics, the "
                                                        "EventBridge API, the waiting room's admin API.")
    public: PublicListenerSettings | None = Field(
        None, description="A listener of its own for the waiting room's public routes (join, status, token, JWKS, "
        "the page): the only port to expose to the internet. Unset: they share the private port.")


class DeadLetterSettings(Section):
    topic: str = "eventweir.dlq"


class BusSettings(Section):
    name: str = "default"
    topic: str | None = Field(
        None, description="The bus topic: eventweir's own events (e.g. the lake's `Object Created`) are produced "
        "here, so rules can react to them when the topic is also a source (kind: envelope).",
    )
    account: str = Field("000000000000", pattern=r"^\d{12}$", description="Envelope `account` and rule ARNs.")
    region: str = Field("local", description="Envelope `region` and rule ARNs.")
    topic_prefix: str = Field(
        "eventweir.bus.", pattern=r"^[A-Za-z0-9._-]{0,40}$",
        description="The topic of another bus (`buses:` or CreateEventBus) that names none: <topic_prefix><bus name>.")
    topic_partitions: int = Field(3, ge=1, description="Partitions of a bus topic eventweir creates (CreateEventBus, "
                                                       "or a topic under `buses:` that does not exist yet).")
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings,
                                         description="Schema discovery on this bus: README, Schema discovery.")
    unmatched_topic: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Where this bus's events that no rule matched go (the catch-all), counted in "
        "eventweir_unmatched_events_total. Unset: they are dropped, as EventBridge drops them.")
    tags: dict[str, str] = Field(default_factory=dict, description="What ListTagsForResource shows for this bus.")

    @property
    def rule_arn_prefix(self) -> str:
        """A rule's ARN less its name, as AWS forms it: a custom bus's rules are under rule/<bus>/."""
        return self.rule_arn_prefix_of(self.name)

    def rule_arn_prefix_of(self, bus: str) -> str:
        """rule_arn_prefix for a rule on the bus named `bus` (this account and region)."""
        path = "" if bus == "default" else f"{bus}/"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{path}"

    def bus_arn(self, bus: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:event-bus/{bus}"


BUS_NAME = r"^[\.\-_A-Za-z0-9]{1,200}$"  # AWS's, less `/` (partner buses) and within Kafka's topic length


class EventBusSettings(Section):
    """A bus besides the one of the `bus:` section: its own topic, and the rules that name it."""

    name: str = Field(pattern=BUS_NAME, description="The bus's name (EventBusName in the API).")
    topic: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Its Kafka topic (default: bus.topic_prefix + name). The worker consumes it as a source of kind "
        "envelope (list it under sources to give it enrichment) and routes its events to this bus's rules only.")
    description: str = Field("", max_length=512, description="What DescribeEventBus and ListEventBuses show.")
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings,
                                         description="Schema discovery on this bus, as under `bus:`.")
    unmatched_topic: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Where this bus's events that no rule matched go (as bus.unmatched_topic, for this bus only).")
    tags: dict[str, str] = Field(default_factory=dict, description="What ListTagsForResource shows (TagResource "
                                 "sets them on buses made through the API).")

    def topic_of(self, bus: BusSettings) -> str:
        return self.topic or bus.topic_prefix + self.name


class SourceSettings(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    topic: str
    kind: Literal["json", "envelope", "iot", "clickstream", "cdc"] = Field(
        "json",
        description="json: route the payload as it is; envelope: already an EventBridge event; "
        "iot / clickstream / cdc: validate and normalise into the envelope.",
    )
    source: str | None = Field(
        None, description="Envelope `source` (defaults: eventweir.iot, eventweir.clickstream, eventweir.cdc).")
    detail_type: str | None = Field(None, description="Envelope `detail-type` (iot and clickstream).")
    schemas: list[str] | None = Field(
        None, alias="schema",
        description="Schema refs the payload must satisfy, any of them (e.g. [iot@v1]); defaults to the kind's schema.",
    )

    tombstones: Literal["skip", "delete", "fail"] | None = Field(
        None, description="What a record with a null value (a tombstone) is. cdc: `skip` (the default: Debezium "
        "follows each delete event with one) or `delete`, a `<table>.deleted` event with the key, for topics "
        "flattened by ExtractNewRecordState, whose deletes are tombstones only. Other kinds: `fail` (the default: "
        "dead-lettered) or `skip`. Skipped tombstones are counted in eventweir_tombstones_total.",
    )
    mask: MaskSettings | None = Field(
        None, description="PII masking, right after validation and before anything else (normalise, enrich, rules, "
        "targets, dead letters): README, Masking personal data.",
    )
    enrich: list[EnrichSettings] = Field(
        default_factory=list,
        description="Enrichment stages after normalisation, in order: [{type: join, table: devices, key: "
        "detail.device_id, fields: [site]}, ...]. Stateful ones (order_check, sessions, dedupe, scd2, window, "
        "windows, sequence) keep their state in a compacted changelog topic <group_id>-<topic>-<store>-changelog.",
    )

    @field_validator("schemas", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tombstones(self):
        if self.tombstones == "delete" and self.kind != "cdc":
            raise ValueError(f"tombstones: `delete` makes <table>.deleted events of kind cdc sources; a {self.kind} "
                             "source takes `fail` or `skip`")
        return self


class EnrichSettings(Section):
    """One enrichment stage; its other keys are the stage's settings (streams/config/enrich.py checks them)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(
        description="join (reference table), lookup (cached HTTP), units, derived, order_check, alerts (IoT); "
        "sessions, user_agent, ip (clickstream); dedupe, scd2 (CDC); window (per-key counts over tumbling "
        "windows); windows (tumbling, hopping and session windows over event time); sequence (gaps in a "
        "sequence field per key). Run after validate + normalise, in order; each stage's keys are listed below.",
    )

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in STAGES:
            raise ValueError(f"expected one of {', '.join(STAGES)}")
        return value

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TableSettings(Section):
    topic: str = Field(description="Compacted topic holding the table: JSON rows keyed by id, or Debezium output "
                                   "(the row is `after`; deletes and tombstones remove it).")


class RetryPolicySettings(Section):
    """EventBridge's RetryPolicy: how long and how often a failing delivery is retried."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    maximum_retry_attempts: int = Field(185, ge=0, le=185, alias="MaximumRetryAttempts")
    maximum_event_age_s: int = Field(86400, ge=60, le=86400, alias="MaximumEventAgeInSeconds")


class TargetSettings(Section):
    """One target of a rule: the keys every target has. The keys of its type (a kafka target's
    `topic`, an s3 target's `bucket` ...) are validated by that type's `Settings` (streams/targets/)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[\.\-_A-Za-z0-9]{1,64}$")
    type: str = Field(description="The target type: kafka, bus, log, http, s3, timestream, influxdb, waitingroom or "
                                  "apidestination; its own keys are listed below.")
    key: str | None = Field(None, description="JSON path ($.detail.device_id) whose value keys the output record.")
    input: str | None = Field(None, alias="Input")
    input_path: str | None = Field(None, alias="InputPath")
    input_transformer: dict[str, Any] | None = Field(None, alias="InputTransformer")
    retry_policy: RetryPolicySettings = Field(default_factory=RetryPolicySettings, alias="RetryPolicy")
    dead_letter_topic: str | None = Field(
        None, description="This target's dead-letter topic (default: dead_letter.topic)."
    )
    aws_arn: str | None = Field(None, description="The AWS ARN the target was created with through api.arn_map: what "
                                "ListTargetsByRule shows and ListRuleNamesByTarget finds it by.")
    dead_letter_arn: str | None = Field(None, description="The AWS ARN DeadLetterConfig named (mapped to "
                                        "dead_letter_topic through api.arn_map): what ListTargetsByRule shows.")

    @model_validator(mode="after")
    def _one_input(self):
        given = [n for n, v in (("Input", self.input), ("InputPath", self.input_path),
                                ("InputTransformer", self.input_transformer)) if v is not None]
        if len(given) > 1:  # AWS's wording
            raise ValueError(f"Only one of Input, InputPath, or InputTransformer must be provided for target {self.id}.")
        return self

    def option(self, name: str, default: Any = None) -> Any:
        """One of the type's own keys as given (not validated: see streams.targets.parse_target)."""
        return (self.model_extra or {}).get(name, default)


class RuleSettings(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[\.\-_A-Za-z0-9]{1,64}$")
    description: str = ""
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    event_pattern: dict[str, Any] | None = Field(
        None, alias="EventPattern", description="EventBridge event pattern; omitted = every event."
    )
    targets: list[TargetSettings] = Field(default_factory=list, max_length=100)
    event_bus_name: str | None = Field(
        None, alias="EventBusName", description="The bus whose events this rule sees (one of `buses:`); "
        "omitted = the `bus:` section's bus.")
    tags: dict[str, str] = Field(default_factory=dict, description="What ListTagsForResource shows (TagResource "
                                 "and PutRule's Tags set them on rules made through the API).")

    @field_validator("targets")
    @classmethod
    def _unique_ids(cls, targets):
        return _no_repeats(targets, "id", "target ids must be unique within a rule")


class RoutingSettings(Section):
    max_targets_per_rule: int = Field(5, ge=1, le=100, description="AWS's limit is 5; raise it if you need to.")
    control_topic: str | None = Field(
        None, description="Compacted topic of rule changes (the API writes it, every worker applies it). "
        "Unset: rules come from this file only.",
    )
    max_pattern_chars: int = Field(2048, ge=1, le=4096, description="Longest event pattern, in characters of its "
                                   "JSON: EventBridge's quota, 2048 by default, raised up to 4096 on request.")
    max_hops: int = Field(
        5, ge=1, le=100,
        description="How many times one event may be republished to a bus by eventweir (a `bus` target, the lake's "
        "`Object Created` events), counted in its `eventweir-hops` header. Past it the event goes to the dead-letter "
        "topic (MaxHopsExceeded), so rules that send events round a loop of buses cannot run forever. EventBridge "
        "allows one bus-to-bus hop; 5 allows a chain of a few buses while a loop with two targets a hop stops at "
        "2^5 = 32 copies.")
    retry_base_delay_ms: int = Field(1000, ge=1, description="First retry back-off; doubles per attempt, with jitter.")
    retry_max_delay_ms: int = Field(60_000, ge=1, description="Back-off cap.")
    http_allow_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) http targets may call besides public internet addresses. Loopback, private, "
        "link-local and other non-public addresses are refused unless listed here, e.g. [10.0.0.0/8] for services "
        "inside the cluster: a rule must not be a way in.",
    )

    secrets_key: str | None = Field(
        None, repr=False,
        description="Key that encrypts connection secrets given by value (CreateConnection) on the control topic: "
        "base64 of 32 random bytes (AES-256-GCM), e.g. ${EVENTWEIR_SECRETS_KEY}. Every worker needs the same key. "
        "Unset: the API takes secrets only as ${VAR} references to the workers' environment.")

    @field_validator("secrets_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError("expected base64 of 32 bytes (head -c 32 /dev/urandom | base64)")
        return value

    @field_validator("http_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"expected CIDR networks such as 10.0.0.0/8, got {cidr!r}") from None
        return value


class WaitingRoomSettings(Section):
    """The virtual waiting room, served under /waitingroom on the HTTP port (README, "Waiting room")."""

    admin_token: str = Field(repr=False, min_length=16,
                             description="Bearer token of the admin API (at least 16 characters; never logged).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://",
                           description="Where queues, sessions and signing keys live.")
    key_prefix: str = Field("eventweir:wr:", description="Prefix of every Redis key the rooms use.")
    redis_max_connections: int = Field(32, ge=1, description="Connections of the pool for rare calls (rooms, keys, "
                                       "admin); joins, polls and ticks share one pipelined connection per worker.")
    redis_timeout_s: float = Field(5.0, gt=0, le=300, description="A Redis call unanswered this long fails (a hung "
                                   "Redis or a partition): joins, polls and admin calls answer 503 with retry_after_s "
                                   "instead of hanging.")
    token_alg: Literal["EdDSA", "ES256", "RS256"] = Field(
        "EdDSA", description="Signing algorithm of generated keys (RS256 for API Gateway's JWT authorizer and most "
        "gateways). A change takes effect through a rotation begun at start-up (pre-published like any other).")
    key_grace_s: float | None = Field(None, gt=0, description="How long a rotated-out signing key still verifies "
                                      "(default: the longest session_duration_s + 60).")
    issuer: str = Field("eventweir-waitingroom", pattern=r"[^/]$",
                        description="The tokens' `iss` and the discovery document's issuer; for gateways, the public "
                        "URL of /waitingroom, e.g. https://shop.example.com/waitingroom.")
    jwks_max_age_s: int = Field(60, ge=0, description="Cache-Control max-age of the JWKS and discovery document.")
    key_prepublish_s: float = Field(
        300, gt=0, description="A rotated-in key is published this long before it signs; must exceed "
        "jwks_max_age_s and every verifier's own cache of the keys.")
    signing_keys: list[str] = Field(
        default_factory=list, repr=False,
        description="Signing keys from configuration, never stored in Redis: PEM files (a mounted Kubernetes Secret) "
        "or PEM texts (${VAR}). RSA 2048+, P-256 or Ed25519; the first signs, the others only verify. "
        "Empty: keys are generated and kept in Redis.")
    key_encryption_key: str | None = Field(
        None, repr=False, min_length=32,
        description="Seals generated signing keys in Redis (AES-GCM), so reading Redis is not the power to mint "
        "tokens (at least 32 characters; from a Secret). Unset: stored unencrypted, with a warning at start.")
    challenge_key: str | None = Field(
        None, repr=False, min_length=32,
        description="HMAC key of the rooms' bot-protection challenges (ALTCHA), the same on every worker (at least "
        "32 characters; from a Secret). Unset: derived from key_encryption_key, else generated and kept in Redis.")
    tick_interval_s: float = Field(0.5, gt=0, description="How often the inlet admits the next waiters.")
    rooms: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Rooms at start-up: {room id: settings} (README, waiting-room settings). "
        "Public joins solve a proof-of-work challenge first unless a room sets bot_protection: false; "
        "bot_protection: {altcha: {max_number: 100000, expires_s: 300}} sets its cost.")

    @model_validator(mode="after")
    def _rooms(self):
        from processors.waitingroom.settings import SettingsError, parse_room_settings

        for room_id, raw in self.rooms.items():
            try:
                parse_room_settings(room_id, raw, path=f"waitingroom.rooms.{room_id}")
            except SettingsError as exc:
                raise ValueError(str(exc)) from None
        return self

    def service_settings(self, account: str, region: str) -> dict[str, Any]:
        """What streams.http.waitingroom.api.build_waitingroom_service takes."""
        return dict(self.model_dump(exclude_none=True), account=account, region=region)


class ArnMapping(Section):
    """One row of api.arn_map: targets created with an AWS ARN the pattern matches become this target."""

    arn: str = Field(pattern=r"^arn:", description="An AWS ARN; `*` matches any characters, e.g. "
                     "arn:aws:sqs:*:*:orders.")
    target: dict[str, Any] = Field(description="The eventweir target: its type and that type's keys, e.g. {type: "
                                   "kafka, topic: orders}; `{name}` in a value is the ARN's last name (the queue, "
                                   "stream, function ...).")

    @field_validator("target")
    @classmethod
    def _has_type(cls, target):
        if not isinstance(target.get("type"), str):
            raise ValueError("target needs a `type` (kafka, http, s3 ...)")
        if {"id", "aws_arn"} & set(target):
            raise ValueError("target takes no `id` or `aws_arn`: they come from PutTargets")
        return target


class ApiSettings(Section):
    """The EventBridge-compatible API on the HTTP port (JSON 1.1, X-Amz-Target: AWSEvents.*)."""

    enabled: bool = True
    access_keys: dict[str, str] = Field(
        default_factory=dict, description="SigV4 credentials: {access key id: secret access key}."
    )
    bearer_tokens: list[str] = Field(default_factory=list, description="Accepted `Authorization: Bearer` tokens.")
    signing_regions: list[str] = Field(
        default_factory=list, description="Regions SigV4 requests may be signed for besides bus.region, e.g. "
        "[us-east-1] for clients that keep their AWS region (the service must be `events`).")
    allow_anonymous: bool = Field(False, description="Accept unsigned requests (never in production).")
    bus_topic: str | None = Field(
        None, description="Where PutEvents writes (default: bus.topic, else the first source of kind `envelope`)."
    )
    arn_map: list[ArnMapping] = Field(
        default_factory=list, description="AWS target ARNs (SQS, Kinesis, Firehose, Lambda, Step Functions ...) as "
        "eventweir targets, first match wins: [{arn: 'arn:aws:sqs:*:*:orders', target: {type: kafka, topic: orders}}].")


class ArchiveLakeSettings(Section):
    """Where archives go when archives.storage is s3: a bucket, objects under a prefix, Object Lock optional."""

    bucket: str = Field(description="The S3 bucket archives are written to (Object Lock needs a bucket created with "
                        "Object Lock enabled).")
    prefix: str = Field("eventweir/archives/", pattern=r"^([A-Za-z0-9!_.*'()=-]+/)*$",
                        description="An archive's objects: <prefix><archive name>.<created ms>/<topic>+<partition>+"
                        "<first offset>.jsonl.gz; its progress markers beside them, under <...>.progress/.")
    endpoint_url: str | None = Field(None, description="An S3-compatible endpoint (MinIO, moto); default AWS.")
    region: str | None = None
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(
        None, description="Write each archive object with S3 Object Lock retention in this mode until the archive's "
        "RetentionDays after the write (RetentionDays 0: no retention, kept until deleted).")
    flush_size: int = Field(10_000, ge=1, description="Events per object at most (per bus partition).")
    flush_interval_s: float = Field(60.0, gt=0, description="A quiet partition's events are written after this long.")


class ArchiveSettings(Section):
    """Archives and replays made through the API (CreateArchive, StartReplay): README, "Archives and replay"."""

    storage: Literal["kafka", "s3"] = Field("kafka", description="Where CreateArchive keeps an archive: a Kafka topic "
                                            "with time retention, or objects in archives.s3 (with Object Lock "
                                            "retention when configured), which can outlive Kafka's retention.")
    s3: ArchiveLakeSettings | None = Field(None, description="The S3 lake archives go to when storage is s3.")
    topic_prefix: str = Field("eventweir.archive.", pattern=r"^[A-Za-z0-9._-]{0,40}$",
                              description="An archive's Kafka topic: <topic_prefix><archive name>.")
    replay_events_per_second: float = Field(1000.0, gt=0, description="How fast one replay republishes archived "
                                            "events to its bus.")
    replay_lease_s: float = Field(30.0, gt=0, description="A worker running a replay renews its claim on the control "
                                  "topic this often or faster; one that stops renewing (killed) loses the replay to "
                                  "another worker after this long, which resumes from the last progress saved.")
    replay_start_delay_s: float = Field(2.0, ge=0, description="A replay stays STARTING this long before its first "
                                        "event, so that every worker has read it from the control topic (and "
                                        "delivers its events to the rules it names) before they arrive.")
    replay_progress_interval_s: float = Field(1.0, gt=0, description="How often a running replay saves its position "
                                              "(after its events are acknowledged): at most this much is replayed "
                                              "twice after a worker dies.")

    @model_validator(mode="after")
    def _lake(self):
        if self.storage == "s3" and self.s3 is None:
            raise ValueError("storage s3 needs archives.s3 (bucket, prefix ...)")
        return self


class Config(Section):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    bus: BusSettings = Field(default_factory=BusSettings)
    buses: list[EventBusSettings] = Field(
        default_factory=list, description="More event buses, each a Kafka topic: [{name: orders}, {name: audit, "
        "topic: audit.events}]. The `bus:` section is the bus PutEvents and rules use when they name none.")
    waitingroom: WaitingRoomSettings | None = Field(
        None, description="Virtual waiting room, served under /waitingroom on the HTTP port (see README).",
    )
    sources: list[SourceSettings] = Field(min_length=1)
    tables: dict[str, TableSettings] = Field(
        default_factory=dict,
        description="Reference tables for `join` enrichment: {name: {topic}}. Each is read whole from its topic "
        "before the worker reports ready, then kept current.",
    )
    rules: list[RuleSettings] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    archives: ArchiveSettings = Field(default_factory=ArchiveSettings)

    @model_validator(mode="after")
    def _targets_per_rule(self):
        limit, chars = self.routing.max_targets_per_rule, self.routing.max_pattern_chars
        for i, rule in enumerate(self.rules):
            if len(rule.targets) > limit:
                raise ValueError(f"rules[{i}].targets: at most {limit} targets per rule "
                                 f"(routing.max_targets_per_rule), got {len(rule.targets)}")
            size = len(orjson.dumps(rule.event_pattern)) if rule.event_pattern is not None else 0
            if size > chars:
                raise ValueError(f"rules[{i}].EventPattern: {size} characters, more than routing.max_pattern_chars "
                                 f"({chars}; EventBridge allows up to 4096)")
        return self

    @model_validator(mode="after")
    def _buses(self):
        _no_repeats(self.buses, "name", "bus names must be unique")
        if any(b.name == self.bus.name for b in self.buses):
            raise ValueError(f"buses: {self.bus.name!r} is the `bus:` section's bus")
        topics = [b.topic_of(self.bus) for b in self.buses]
        taken = {t for t in (self.bus.topic, self.api.bus_topic) if t}
        clash = sorted({t for t in topics if topics.count(t) > 1 or t in taken})
        if clash:
            raise ValueError(f"buses: each bus needs a topic of its own, shared: {', '.join(clash)}")
        consumed = {*self.source_topics, *topics, *taken}
        for where, unmatched in [("bus", self.bus.unmatched_topic),
                                 *((f"buses[{i}]", b.unmatched_topic) for i, b in enumerate(self.buses))]:
            if unmatched in consumed:  # its events would come back unmatched, forever
                raise ValueError(f"{where}.unmatched_topic: {unmatched} is a topic the worker routes; give the "
                                 "unmatched events a topic of their own")
        known = {self.bus.name, *(b.name for b in self.buses)}
        for i, rule in enumerate(self.rules):
            if rule.event_bus_name is not None and rule.event_bus_name not in known:
                raise ValueError(f"rules[{i}].EventBusName: no bus {rule.event_bus_name!r} (declare it under buses)")
            for target in rule.targets:
                named = target.option("bus") if target.type == "bus" else None
                # without a control topic no bus can be made later: a name not declared is a mistake
                if isinstance(named, str) and self.routing.control_topic is None and \
                        named.rsplit(":event-bus/", 1)[-1] not in known:
                    raise ValueError(f"rules[{i}].targets[{target.id}].bus: no bus {named!r} (declare it under buses)")
        return self

    def bus_of(self, rule: RuleSettings) -> str:
        """The name of the bus whose events `rule` sees."""
        return rule.event_bus_name or self.bus.name

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules):
        return _no_repeats(rules, "name", "rule names must be unique")

    @model_validator(mode="after")
    def _stage_settings(self):
        problems = []
        for i, source in enumerate(self.sources):
            for j, entry in enumerate(source.enrich):
                if entry.type not in STAGES:
                    continue  # reported by its own validator
                try:
                    parse_stage(f"sources[{i}].enrich[{j}]", entry.type, entry.settings())
                except ValueError as exc:
                    problems.append(str(exc))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def source_topics(self) -> list[str]:
        return [s.topic for s in self.sources]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping of sections, got {type(data).__name__}")
    environ = os.environ if environ is None else environ
    try:
        data = _merge(interpolate(data, environ), env_overrides(environ))
    except InterpolationError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(describe_error(e) for e in exc.errors())) from None


def load_config(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> Config:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} not found (pass one with -c, or see README.md for an example)")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    return parse_config(data, environ)
