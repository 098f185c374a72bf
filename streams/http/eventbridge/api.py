"""The EventBridge-compatible API: AWS's JSON 1.1 protocol on the worker's HTTP port.

    POST /   X-Amz-Target: AWSEvents.<Operation>   Content-Type: application/x-amz-json-1.1

PutEvents, TestEventPattern, PutRule, DescribeRule, ListRules, DeleteRule, EnableRule,
DisableRule, PutTargets, ListTargetsByRule, RemoveTargets, CreateEventBus, DescribeEventBus,
ListEventBuses, UpdateEventBus and DeleteEventBus, with AWS's error types and texts (connections and
API destinations: streams/http/eventbridge/connections.py; ListRuleNamesByTarget, TagResource,
UntagResource, ListTagsForResource and AWS target ARNs: streams/http/eventbridge/resources.py),
so code written for EventBridge works by changing only `endpoint_url`. Every request must be
signed with SigV4 by a configured access key (what boto3 does) or carry a configured bearer
token, unless `api.allow_anonymous` is set.

Rule and bus changes are written to the control topic (streams/runtime/reload.py); every worker,
this one included, applies them from there. A bus is a Kafka topic (streams/runtime/buses.py).
Rules from the config file are listed but read-only (ManagedBy: eventweir.config). Target ARNs name eventweir targets:
`kafka://<topic>`, `http://...` / `https://...` (API destination), `log://<name>`, or an AWS ARN
mapped by api.arn_map; a
DeadLetterConfig ARN is `kafka://<topic>` or an AWS ARN (an SQS queue) api.arn_map maps to a kafka target.
"""
from __future__ import annotations

import hmac
import logging
import re
import secrets
import string
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from streams import metrics
from streams.config import BUS_NAME, ConfigError, EventBusSettings, RuleSettings, TargetSettings
from streams.http.bearer import bearer_token
from streams.http.eventbridge import shapes
from streams.http.eventbridge.archives import ArchiveOperations
from streams.http.eventbridge.sigv4 import SignatureError, verify
from streams.kafka.admin import ensure_topics
from streams.runtime.buses import Bus, StoredBus, all_buses, main_bus_topic
from streams.targets import parse_target
from streams.targets.bus import BUS_ARN
from streams.targets.http import AddressPolicy

CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_ENTRIES = 10
MAX_PUT_EVENTS_BYTES = 256 * 1024
MANAGED_BY_CONFIG = "eventweir.config"

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, type_: str, message: str, status: int = 400):
        super().__init__(message)
        self.type, self.message, self.status = type_, message, status


def _validation(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def _reply(data: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers={"Content-Type": CONTENT_TYPE,
                                                                          "x-amzn-RequestId": str(uuid.uuid4())})


# --- targets: AWS shape <-> eventweir settings -----------------------------------------------------
def _topic_from_arn(arn: str, what: str) -> str:
    if arn.startswith("kafka://") and len(arn) > len("kafka://"):
        return arn[len("kafka://"):]
    raise _validation(f"{what} {arn!r} is not supported: use kafka://<topic>.")


def _dead_letter_topic(arn: str, arn_map: list) -> str:
    """A DeadLetterConfig Arn's topic: kafka://<topic>, or an AWS ARN (an SQS queue) api.arn_map maps to a kafka target."""
    if arn.startswith("kafka://"):
        return _topic_from_arn(arn, "DeadLetterConfig Arn")
    kafka = "{type: kafka, topic: <topic>}"
    target = resources.mapped_target(arn_map, arn, "DeadLetterConfig Arn", "kafka://<topic>", kafka)
    if target.get("type") != "kafka" or not isinstance(target.get("topic"), str):
        raise _validation(f"DeadLetterConfig Arn {arn!r} is mapped by api.arn_map to a {target.get('type')} target; "
                          f"a dead-letter queue is a Kafka topic: map it to {kafka}.")
    return target["topic"]


def target_from_aws(spec: dict, arn_map: list | None = None) -> TargetSettings:
    arn = spec.get("Arn") or ""
    data: dict[str, Any] = {"id": spec.get("Id")}
    if arn.startswith("kafka://"):
        data.update(type="kafka", topic=_topic_from_arn(arn, "Target Arn"))
    elif arn.startswith(("http://", "https://")):
        data.update(type="http", url=arn)
        headers = (spec.get("HttpParameters") or {}).get("HeaderParameters")
        if headers:
            data["headers"] = headers
    elif arn.startswith("log://"):
        data["type"] = "log"
    elif connections.is_api_destination_arn(arn):
        data.update(connections.target_settings(spec))
    elif BUS_ARN.match(arn):  # another event bus (streams/targets/bus.py)
        data.update(type="bus", bus=arn)
    else:  # an AWS ARN (SQS, Kinesis, Lambda ...): the target api.arn_map names, else the row to add
        data.update(resources.mapped_target(arn_map or [], arn))
    key_path = (spec.get("KinesisParameters") or {}).get("PartitionKeyPath")
    if key_path:
        data["key"] = key_path
    for name in ("Input", "InputPath", "InputTransformer", "RetryPolicy"):
        if name in spec:
            data[name] = spec[name]
    dlq = (spec.get("DeadLetterConfig") or {}).get("Arn")
    if dlq:
        data["dead_letter_topic"] = _dead_letter_topic(dlq, arn_map or [])
        if not dlq.startswith("kafka://"):
            data["dead_letter_arn"] = dlq  # what ListTargetsByRule answers
    try:
        target = TargetSettings.model_validate(data)
    except ValidationError as exc:
        raise _validation("; ".join(_pydantic_message(e) for e in exc.errors())) from None
    try:
        parse_target("api", target)  # the type's own keys (a kafka topic, an http url)
    except ConfigError as exc:
        raise _validation("; ".join(line.split(": ", 1)[-1] for line in str(exc).splitlines())) from None
    if target.input is not None or target.input_path is not None or target.input_transformer is not None:
        from processors.routing import ValidationException, compile_target_input

        try:
            compile_target_input(input=target.input, input_path=target.input_path,
                                 input_transformer=target.input_transformer, target_id=target.id)
        except ValidationException as exc:
            raise _validation(exc.message) from None
    return target


def target_to_aws(t: TargetSettings) -> dict:
    if t.type == "kafka":
        out: dict[str, Any] = {"Id": t.id, "Arn": f"kafka://{t.option('topic')}"}
    elif t.type == "bus":
        out = {"Id": t.id, "Arn": t.option("bus")}
    elif t.type == "http":
        out = {"Id": t.id, "Arn": t.option("url")}
        if t.option("headers"):
            out["HttpParameters"] = {"HeaderParameters": dict(t.option("headers"))}
    elif t.type == "apidestination":
        out = connections.target_to_aws(t)
    else:
        out = {"Id": t.id, "Arn": f"{t.type}://{t.id}"}
    if t.aws_arn:
        out["Arn"] = t.aws_arn
    if t.key:
        out["KinesisParameters"] = {"PartitionKeyPath": t.key}
    for attr, name in (("input", "Input"), ("input_path", "InputPath"), ("input_transformer", "InputTransformer")):
        if getattr(t, attr) is not None:
            out[name] = getattr(t, attr)
    out["RetryPolicy"] = {"MaximumRetryAttempts": t.retry_policy.maximum_retry_attempts,
                          "MaximumEventAgeInSeconds": t.retry_policy.maximum_event_age_s}
    if t.dead_letter_topic:
        out["DeadLetterConfig"] = {"Arn": t.dead_letter_arn or f"kafka://{t.dead_letter_topic}"}
    return out


def _pydantic_message(error: ErrorDetails) -> str:
    path = ".".join(str(p) for p in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


# --- the API -----------------------------------------------------------------------------------------
class EventBridgeApi(ArchiveOperations):
    def __init__(self, worker, access_keys: dict[str, str], bearer_tokens: list[str], allow_anonymous: bool):
        self.worker = worker
        self.config = worker.config
        self.access_keys = dict(access_keys)
        self.bearer_tokens = [t.encode() for t in bearer_tokens]
        self.allow_anonymous = allow_anonymous
        self.bus_topic = main_bus_topic(self.config)

    # -- plumbing --
    async def handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix("AWSEvents.")
        # the metric's label is an operation this API has, else "unknown": a caller, authenticated
        # or not, cannot make new series by sending new names
        label = operation if target.startswith("AWSEvents.") and hasattr(self, f"op_{operation}") else "unknown"
        try:
            body = await request.read()
            self._authenticate(request, body)
            handler = getattr(self, f"op_{operation}", None) if target.startswith("AWSEvents.") else None
            if handler is None:
                raise ApiError("UnknownOperationException", f"Unknown operation {target!r}")
            try:
                params = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                raise ApiError("SerializationException", "Request body is not valid JSON.") from None
            if not isinstance(params, dict):
                raise ApiError("SerializationException", "Request body must be a JSON object.")
            try:
                shapes.check(operation, params)
            except shapes.ShapeError as exc:
                raise ApiError(exc.code, exc.message) from None
            result = await handler(params)
        except ApiError as exc:
            metrics.API_REQUESTS.labels(label, exc.type).inc()
            return _reply({"__type": exc.type, "message": exc.message}, exc.status)
        except Exception:  # a bug: still AWS's JSON shape (boto3 reads it), and the traceback in the log
            log.exception("EventBridge API %s failed", label)
            metrics.API_REQUESTS.labels(label, "InternalException").inc()
            return _reply({"__type": "InternalException", "message": "An internal error occurred; see the worker's log."},
                          500)
        metrics.API_REQUESTS.labels(label, "ok").inc()
        return _reply(result)

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        auth = request.headers.get("Authorization", "")
        token = bearer_token(auth)
        if token is not None:
            if any(hmac.compare_digest(token, t) for t in self.bearer_tokens):
                return
            raise ApiError("UnrecognizedClientException", "The bearer token is not valid.", 403)
        if auth.startswith("AWS4-HMAC-SHA256"):
            try:
                verify(request.method, request.raw_path, request.headers, body, self.access_keys,
                       regions={self.config.bus.region, *self.config.api.signing_regions})
                return
            except SignatureError as exc:
                raise ApiError(exc.code, exc.message, 403) from None
        if self.allow_anonymous:
            return
        raise ApiError("MissingAuthenticationTokenException",
                       "Missing Authentication Token: sign the request with SigV4 or send a bearer token.", 403)

    def _rules(self) -> dict[str, RuleSettings]:
        control = self.worker.control
        rules = control.rules() if control is not None else list(self.config.rules)
        return {r.name: r for r in rules}

    def _buses(self) -> dict[str, Bus]:
        control = self.worker.control
        return all_buses(self.config, control.store.buses if control is not None else None)

    def _bus_name(self, value: Any, buses: dict[str, Bus] | None = None) -> str | None:
        """The name of the bus `value` (EventBusName: absent, a name or an ARN) names, None if there is none."""
        if value is None:
            return self.config.bus.name
        if not isinstance(value, str):
            return None
        prefix = self.config.bus.bus_arn("")
        name = value.removeprefix(prefix) if value.startswith(prefix) else value
        return name if name in (self._buses() if buses is None else buses) else None

    def _bus(self, value: Any) -> str:
        name = self._bus_name(value)
        if name is None:
            shown = value.rsplit("/", 1)[-1] if isinstance(value, str) else value
            raise ApiError("ResourceNotFoundException", f"Event bus {shown} does not exist.")
        return name

    def _get(self, name: Any, bus: Any = None) -> RuleSettings:
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        bus_name = self._bus(bus)
        rule = self._rules().get(name)
        if rule is None or self.config.bus_of(rule) != bus_name:
            raise ApiError("ResourceNotFoundException", f"Rule {name} does not exist on EventBus {bus_name}.")
        return rule

    def _writable(self, name: str):
        if any(r.name == name for r in self.config.rules):
            raise ApiError("ManagedRuleException",
                           f"Rule {name} is defined in the config file (ManagedBy {MANAGED_BY_CONFIG}); change it there.")
        return self._store()

    def _store(self):
        control = self.worker.control
        if control is None:
            raise _validation("Rule and bus changes need a control topic: set routing.control_topic in the config.")
        return control.store

    async def _save(self, store, rule: dict) -> None:
        try:
            validated = RuleSettings.model_validate(rule)
        except ValidationError as exc:
            raise _validation("; ".join(_pydantic_message(e) for e in exc.errors())) from None
        await store.put(validated)

    def _describe(self, rule: RuleSettings) -> dict:
        bus = self.config.bus_of(rule)
        out: dict[str, Any] = {"Name": rule.name, "Arn": self.config.bus.rule_arn_prefix_of(bus) + rule.name,
                               "State": rule.state, "EventBusName": bus}
        if rule.event_pattern is not None:
            out["EventPattern"] = orjson.dumps(rule.event_pattern).decode()
        if rule.description:
            out["Description"] = rule.description
        if any(r.name == rule.name for r in self.config.rules):
            out["ManagedBy"] = MANAGED_BY_CONFIG
        return out

    def _describe_bus(self, bus: Bus) -> dict:
        out: dict[str, Any] = {"Name": bus.name, "Arn": self.config.bus.bus_arn(bus.name)}
        if bus.description:
            out["Description"] = bus.description
        if bus.created is not None:
            out["CreationTime"], out["LastModifiedTime"] = bus.created, bus.modified
        return out

    # -- operations --
    async def op_PutEvents(self, params: dict) -> dict:
        entries = params.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise _validation("1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                              f"Member must have length less than or equal to {MAX_ENTRIES}"
                              if isinstance(entries, list) and entries else
                              "1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                              "Member must have length greater than or equal to 1")
        size = sum(_entry_size(e) for e in entries if isinstance(e, dict))
        if size > MAX_PUT_EVENTS_BYTES:
            raise _validation("Total size of the entries in the request is over the limit.")
        producer = self.worker.producer
        if producer is None:
            raise ApiError("InternalException", "The worker is not started yet; retry shortly.", 500)
        results: list[dict | None] = [None] * len(entries)
        # every entry is checked and serialised before any is written: a bad entry gets its own
        # error and can never fail the call after others are already on the bus (boto3 would
        # retry the whole call and write those again)
        ready = []
        bus = self.config.bus
        buses = self._buses()
        unknown_bus = 0
        for i, entry in enumerate(entries):
            event, error = _envelope(entry, bus)
            if event is None:  # then error is set
                results[i] = error
                continue
            name = self._bus_name(entry.get("EventBusName"), buses)
            if name is None:
                # AWS answers an entry for a bus that does not exist with an EventId and delivers it
                # nowhere (recorded in LocalStack's AWS-validated test_put_events_nonexistent_event_bus);
                # here it is at least counted and logged, and never lands on the default bus
                results[i] = {"EventId": event["id"]}
                unknown_bus += 1
                continue
            topic = buses[name].topic
            if topic is None:
                raise _validation("PutEvents needs a bus topic: set bus.topic (or api.bus_topic), or a source of kind "
                                  "`envelope`.")
            try:
                ready.append((i, event["id"], topic, orjson.dumps(event)))
            except TypeError:  # orjson's nesting limit: the envelope adds a level to the Detail
                results[i] = {"ErrorCode": "MalformedDetail",
                              "ErrorMessage": f"Detail is malformed: nested deeper than {MAX_DETAIL_DEPTH} levels."}
        pending = [(i, event_id, await producer.send(topic, value)) for i, event_id, topic, value in ready]
        for i, event_id, future in pending:
            try:
                await future
                results[i] = {"EventId": event_id}
            except Exception as exc:  # the broker refused: per entry, as AWS reports InternalFailure
                results[i] = {"ErrorCode": "InternalFailure", "ErrorMessage": f"{type(exc).__name__}: {exc}"}
        failed = sum(1 for r in results if r is not None and "ErrorCode" in r)  # every entry has its result
        metrics.PUT_EVENTS_ENTRIES.labels("accepted").inc(len(results) - failed - unknown_bus)
        metrics.PUT_EVENTS_ENTRIES.labels("failed").inc(failed)
        if unknown_bus:
            metrics.PUT_EVENTS_ENTRIES.labels("unknown_bus").inc(unknown_bus)
            log.warning("PutEvents: %d entries named an event bus that does not exist; answered as AWS does and "
                        "not delivered", unknown_bus)
        return {"FailedEntryCount": failed, "Entries": results}

    async def op_TestEventPattern(self, params: dict) -> dict:
        from processors.routing import InvalidEventPatternException, ValidationException, compile_pattern, validate_event

        try:
            pattern = compile_pattern(self._pattern_text(params))
        except InvalidEventPatternException as exc:
            raise ApiError("InvalidEventPatternException", exc.message) from None
        try:
            event = orjson.loads(params.get("Event") or "")
            validate_event(event)
        except (orjson.JSONDecodeError, ValidationException):
            raise _validation("Parameter Event is not valid.") from None
        return {"Result": pattern.matches(event)}

    async def op_PutRule(self, params: dict) -> dict:
        from processors.routing import InvalidEventPatternException, compile_pattern

        name = params.get("Name")
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        if params.get("ScheduleExpression"):
            raise _validation("ScheduleExpression is not supported by eventweir; use an EventPattern.")
        if not params.get("EventPattern"):
            raise _validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        text = self._pattern_text(params)
        try:
            compile_pattern(text)
        except InvalidEventPatternException as exc:
            raise ApiError("InvalidEventPatternException", exc.message) from None
        state = params.get("State", "ENABLED")
        if state not in ("ENABLED", "DISABLED"):
            raise _validation(f"State {state!r} is not supported: ENABLED or DISABLED.")
        bus = self._bus(params.get("EventBusName"))
        store = self._writable(name)
        existing = store.rules.get(name)
        if existing is not None and self.config.bus_of(existing) != bus:
            raise ApiError("ResourceAlreadyExistsException",
                           f"Rule {name} already exists on EventBus {self.config.bus_of(existing)}: eventweir keeps rule "
                           "names unique across buses.")
        await self._save(store, {
            "name": name, "description": params.get("Description", ""), "state": state,
            "event_pattern": orjson.loads(text),
            "targets": [t.model_dump(mode="json", exclude_defaults=True) for t in existing.targets] if existing else [],
            "event_bus_name": None if bus == self.config.bus.name else bus,
            "tags": (dict(existing.tags) if existing else {}) | resources.tags_of_request(params),
        })
        return {"RuleArn": self.config.bus.rule_arn_prefix_of(bus) + name}

    def _pattern_text(self, params: dict) -> str:
        """The request's EventPattern, within AWS's 4096 characters and this bus's quota."""
        text = params.get("EventPattern") or ""
        limit = self.config.routing.max_pattern_chars
        if len(text) > 4096:
            raise _validation("1 validation error detected: Value at 'eventPattern' failed to satisfy constraint: "
                              "Member must have length less than or equal to 4096")
        if len(text) > limit:
            raise ApiError("LimitExceededException", f"The event pattern is {len(text)} characters; this bus allows "
                                                     f"{limit} (routing.max_pattern_chars, up to 4096).")
        return text

    async def op_DescribeRule(self, params: dict) -> dict:
        return self._describe(self._get(params.get("Name"), params.get("EventBusName")))

    async def op_ListRules(self, params: dict) -> dict:
        prefix = params.get("NamePrefix") or ""
        bus = self._bus(params.get("EventBusName"))
        names = sorted(n for n, r in self._rules().items() if n.startswith(prefix) and self.config.bus_of(r) == bus)
        token = params.get("NextToken") or "0"
        if not token.isdigit():
            raise _validation("The NextToken is not valid.")
        start, limit = int(token), params.get("Limit") or 100
        rules = self._rules()
        page = names[start:start + limit]
        out: dict[str, Any] = {"Rules": [self._describe(rules[n]) for n in page]}
        if start + limit < len(names):
            out["NextToken"] = str(start + limit)
        return out

    async def op_DeleteRule(self, params: dict) -> dict:
        name: Any = params.get("Name")  # any JSON: a rule's name if the lookup finds it
        bus = self._bus(params.get("EventBusName"))
        rule = self._rules().get(name)
        if rule is None or self.config.bus_of(rule) != bus:
            return {}  # AWS: deleting a rule that does not exist succeeds
        store = self._writable(name)
        if rule.targets and not params.get("Force"):
            raise _validation("Rule can't be deleted since it has targets.")
        await store.delete(name)
        return {}

    async def _set_state(self, params: dict, state: str) -> dict:
        rule = self._get(params.get("Name"), params.get("EventBusName"))
        store = self._writable(rule.name)
        await self._save(store, {**rule.model_dump(mode="json", exclude_defaults=True), "state": state})
        return {}

    async def op_EnableRule(self, params: dict) -> dict:
        return await self._set_state(params, "ENABLED")

    async def op_DisableRule(self, params: dict) -> dict:
        return await self._set_state(params, "DISABLED")

    async def op_PutTargets(self, params: dict) -> dict:
        rule = self._get(params.get("Rule"), params.get("EventBusName"))
        store = self._writable(rule.name)
        specs = params.get("Targets")
        if not isinstance(specs, list) or not specs:
            raise _validation("Parameter Targets is required.")
        new = [target_from_aws(spec, self.config.api.arn_map) for spec in specs]  # raises for the whole call, as AWS does
        policy = AddressPolicy(tuple(self.config.routing.http_allow_networks))
        for target in new:
            refusal = policy.check_url(target.option("url")) if target.type == "http" else None
            if refusal is not None:
                raise _validation(f"Target {target.id}: {refusal}")
            if target.type == "apidestination":
                connections.check_target(self, target)
        merged = {t.id: t for t in rule.targets}
        merged.update({t.id: t for t in new})
        if len(merged) > self.config.routing.max_targets_per_rule:
            raise ApiError("LimitExceededException",
                           f"The requested resource exceeds the maximum number allowed "
                           f"({self.config.routing.max_targets_per_rule} targets per rule).")
        doc = rule.model_dump(mode="json", exclude_defaults=True)
        doc["targets"] = [t.model_dump(mode="json", exclude_defaults=True) for t in merged.values()]
        await self._save(store, doc)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def op_ListTargetsByRule(self, params: dict) -> dict:
        rule = self._get(params.get("Rule"), params.get("EventBusName"))
        page, token = resources.page(rule.targets, params)
        return {"Targets": [target_to_aws(t) for t in page], **({"NextToken": token} if token else {})}

    async def op_RemoveTargets(self, params: dict) -> dict:
        rule = self._get(params.get("Rule"), params.get("EventBusName"))
        store = self._writable(rule.name)
        ids = set(params.get("Ids") or [])
        doc = rule.model_dump(mode="json", exclude_defaults=True)
        doc["targets"] = [t.model_dump(mode="json", exclude_defaults=True) for t in rule.targets if t.id not in ids]
        await self._save(store, doc)
        return {"FailedEntryCount": 0, "FailedEntries": []}


    # -- event buses --
    def _new_bus_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        if len(name) > 256:
            raise _validation(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
                              "Member must have length less than or equal to 256")
        if not re.fullmatch(r"[/\.\-_A-Za-z0-9]+", name):
            raise _validation(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
                              "Member must satisfy regular expression pattern: [/\\.\\-_A-Za-z0-9]+")
        if "/" in name:
            raise _validation(f"Event bus {name}: partner event buses (names with /) are not supported by eventweir.")
        if not re.fullmatch(BUS_NAME, name):
            raise _validation(f"Event bus {name}: eventweir takes names of up to 200 characters (the name is part of "
                              "its Kafka topic's).")
        return name

    @staticmethod
    def _unsupported(params: dict, *names: str) -> None:
        for name in names:
            if params.get(name) is not None:
                raise _validation(f"{name} is not supported by eventweir's event buses.")

    async def op_CreateEventBus(self, params: dict) -> dict:
        name = self._new_bus_name(params.get("Name"))
        self._unsupported(params, "EventSourceName", "KmsKeyIdentifier", "DeadLetterConfig", "LogConfig")
        store = self._store()
        buses = self._buses()
        if name in buses:
            raise ApiError("ResourceAlreadyExistsException", f"Event bus {name} already exists.")
        try:
            settings = EventBusSettings(name=name, description=params.get("Description") or "",
                                        tags=resources.tags_of_request(params))
        except ValidationError as exc:
            raise _validation("; ".join(_pydantic_message(e) for e in exc.errors())) from None
        topic = settings.topic_of(self.config.bus)
        if any(b.topic == topic for b in buses.values()):
            raise _validation(f"Event bus {name}: its topic {topic} is another bus's.")
        await ensure_topics(self.config.kafka.bootstrap_servers, {topic: self.config.bus.topic_partitions})
        now = time.time()
        await store.put_bus(StoredBus(settings, now, now))
        out = {"EventBusArn": self.config.bus.bus_arn(name)}
        if settings.description:
            out["Description"] = settings.description
        return out

    async def op_DescribeEventBus(self, params: dict) -> dict:
        name = self._bus(params.get("Name"))
        return self._describe_bus(self._buses()[name])

    async def op_ListEventBuses(self, params: dict) -> dict:
        prefix = params.get("NamePrefix") or ""
        buses = self._buses()
        names = sorted(n for n in buses if n.startswith(prefix))
        token = params.get("NextToken") or "0"
        if not token.isdigit():
            raise _validation("The NextToken is not valid.")
        start, limit = int(token), params.get("Limit") or 100
        out: dict[str, Any] = {"EventBuses": [self._describe_bus(buses[n]) for n in names[start:start + limit]]}
        if start + limit < len(names):
            out["NextToken"] = str(start + limit)
        return out

    def _api_bus(self, name: str) -> Bus:
        bus = self._buses()[name]
        if bus.from_config:
            raise _validation(f"Event bus {name} is defined in the config file; change it there.")
        return bus

    async def op_UpdateEventBus(self, params: dict) -> dict:
        name = self._bus(params.get("Name"))
        self._unsupported(params, "KmsKeyIdentifier", "DeadLetterConfig", "LogConfig")
        bus = self._api_bus(name)
        store = self._store()
        description = params.get("Description")
        if description is not None:
            stored = store.buses[name]
            try:
                settings = stored.settings.model_copy(update={"description": description})
                EventBusSettings.model_validate(settings.model_dump())
            except ValidationError as exc:
                raise _validation("; ".join(_pydantic_message(e) for e in exc.errors())) from None
            await store.put_bus(StoredBus(settings, stored.created, time.time()))
            bus = self._buses()[name]
        out = {"Arn": self.config.bus.bus_arn(name), "Name": name}
        if bus.description:
            out["Description"] = bus.description
        return out

    async def op_DeleteEventBus(self, params: dict) -> dict:
        name = params.get("Name")
        if not isinstance(name, str) or not name:
            raise _validation("Parameter Name is required.")
        if name == self.config.bus.name:
            raise _validation(f"Cannot delete event bus {name}.")
        if name not in self._buses():
            return {}  # AWS: deleting a bus that does not exist succeeds (LocalStack's AWS-validated recording)
        self._api_bus(name)
        store = self._store()
        rules = [n for n, r in store.rules.items() if self.config.bus_of(r) == name]
        await store.delete_bus(name)  # its rules stop seeing events at once: the bus's topic is no longer routed
        for rule in rules:  # and go with it, as on AWS
            await store.delete(rule)
        return {}


def _entry_size(entry: dict) -> int:
    """AWS's PutEvents entry size: the UTF-8 bytes of Source, DetailType, Detail and Resources, +14 for Time."""
    size = 14 if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        value = entry.get(name)
        if isinstance(value, str):
            size += len(value.encode())
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode())
    return size


MAX_DETAIL_DEPTH = 253  # orjson writes 254 levels; the envelope is one of them


def _entry_time(when: Any) -> datetime | None:
    """An entry's `Time` (boto3 sends epoch seconds in JSON 1.1), or None when it is not one."""
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(when, UTC)
    except (OverflowError, OSError, ValueError):  # past year 9999 (a time in milliseconds), or before year 1
        return None


def _envelope(entry: Any, bus) -> tuple[dict | None, dict | None]:
    """The EventBridge event for one PutEvents entry, or AWS's per-entry error."""
    if not isinstance(entry, dict):
        return None, {"ErrorCode": "InvalidArgument", "ErrorMessage": "Entry must be an object."}
    for field in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            return None, {"ErrorCode": "InvalidArgument",
                          "ErrorMessage": f"Parameter {field} is not valid. Reason: {field} is a required argument."}
    try:
        detail = orjson.loads(entry["Detail"])
    except orjson.JSONDecodeError:
        detail = None
    if not isinstance(detail, dict):
        return None, {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
    when = entry.get("Time")
    stamp = datetime.now(UTC) if when is None else _entry_time(when)
    if stamp is None:
        return None, {"ErrorCode": "InvalidArgument", "ErrorMessage": "Parameter Time is not valid. Reason: Time "
                      "must be a timestamp in epoch seconds between years 1 and 9999."}
    resources = entry.get("Resources") or []
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        return None, {"ErrorCode": "InvalidArgument", "ErrorMessage": "Parameter Resources is not valid."}
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": entry["DetailType"], "source": entry["Source"],
        "account": bus.account, "time": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": bus.region,
        "resources": resources, "detail": detail,
    }, None


API_KEY = web.AppKey("eventbridge_api", EventBridgeApi)


def mount_eventbridge_api(app: web.Application, worker, access_keys: dict[str, str] | None = None,
                          bearer_tokens: list[str] | None = None, allow_anonymous: bool | None = None) -> EventBridgeApi:
    """Serve the API at POST / on `app`. Credentials default to the worker's `api` config section."""
    settings = worker.config.api
    api = EventBridgeApi(
        worker,
        settings.access_keys if access_keys is None else access_keys,
        settings.bearer_tokens if bearer_tokens is None else bearer_tokens,
        settings.allow_anonymous if allow_anonymous is None else allow_anonymous,
    )
    app.router.add_post("/", api.handle)
    app[API_KEY] = api
    return api


def generate_credentials() -> tuple[str, str]:
    """A fresh access key id (AWS's AKIA + 16 shape) and a 40-character secret."""
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)[:40]


def mount_demo_api(app: web.Application, worker) -> tuple[str, str]:
    """For `eventweir demo`: serve the API on `app` with a generated access key (plus any configured
    ones); returns (access key id, secret access key) for the demo to print."""
    key_id, secret = generate_credentials()
    api = app.get(API_KEY) or mount_eventbridge_api(app, worker)  # make_app mounts it when api.enabled
    api.access_keys[key_id] = secret
    return key_id, secret


def add_operations(operations: type) -> None:
    """Give EventBridgeApi the methods of a class kept in a module of its own (its handler dispatches on
    `op_<Operation>`). A name it already has is refused: two modules' helpers must not replace each other."""
    for name, member in vars(operations).items():
        if name.startswith("__"):
            continue
        if hasattr(EventBridgeApi, name):
            raise RuntimeError(f"{operations.__name__}.{name} would replace EventBridgeApi.{name}: rename one")
        setattr(EventBridgeApi, name, member)


# connections and API destinations; AWS target ARNs (api.arn_map), ListRuleNamesByTarget and tags
from streams.http.eventbridge import connections, resources  # noqa: E402  (they import this module)

add_operations(connections.ConnectionsApi)
add_operations(resources.ResourcesApi)
