"""Hostile probes against a running eventweir: the rerun of issue 21's probes, with figures.

Run (from the repository root; about two minutes, needs Redis at $EVENTWEIR_REDIS_URL or
redis://127.0.0.1:6379/0 for the waiting room):

    PYTHONPATH=. python tests/probes/hostile.py [--rate 100] [--seconds 20] [--keep] [--verbose]

It starts what `eventweir demo` starts, but with the worker as a process of its own so it can be
killed: an embedded Tansu broker (streams/devtools/broker.py), the demo's topics, device registry,
sources and rules (streams/devtools/demo.py), plus a few probe sources and rules, written to a
config file and run with `python -m streams.cli run -c <config>`. The worker serves the
EventBridge-compatible API (SigV4 keys and a bearer token from the config), the waiting room's
admin API and /metrics on its private port, and the waiting room's public routes on a listener of
their own (http.public). This file is not a pytest test (tests/probes is outside `testpaths`).

Classes of probes (each request has the answer it must get; anything else is "unexpected"):

  item8  malformed but signed   the 12 requests of issue 21 item 8, signed with botocore's SigV4Auth:
                                a 400 with AWS's JSON error (`__type`); for PutEvents a per-entry
                                error (200, FailedEntryCount = 1, nothing written) is AWS's answer too
  item9  limits                 patterns over 2,048 / 4,096 characters (400), a pattern of exactly
                                2,048 (accepted), `Time: true` (400 or a failed entry)
  item12 metric labels          5,000 unauthenticated requests with distinct X-Amz-Target values
                                (403 JSON each) and 50 signed unknown operations (400): /metrics must
                                not grow by more than 64 KiB
  item14 sigv4 refusals         scope for service s3 / region xx-nowhere-9, UNSIGNED-PAYLOAD (as is
                                and with the body changed), X-Amz-Target unsigned, target or body
                                changed after signing: 403 JSON
  item14 botocore shapes        the 9 URL shapes of tests/unit/streams/http/test_sigv4_retry.py (odd
                                query order, repeated keys, a space in the path or query...), signed
                                by botocore and sent as botocore's HTTP layer sends them (urllib3
                                percent-encodes a space: checked with URLLib3Session, it sends
                                `POST /a%20path/x`): POST / ones must be answered 200; other paths are
                                not the API's (404 on the wire), so their signatures are checked with
                                streams.http.eventbridge.sigv4.verify on the path as sent
  item16 room admin             room settings out of bounds (heartbeat_s 1e306, ...) 400; Unicode
                                lookalike room ids 4xx; a valid room 200 (control)
  item17 lean path              bare-LF requests on the public listener's lean path: 400 within 2 s
  item17 bearer                 `Authorization: bearer` / `BEARER` accepted, a wrong token 403; the
                                waiting-room admin API with a lower-case scheme accepted too
  item17 unknown bus            PutEvents naming a bus that does not exist: an EventId, and the
                                event is not on the bus topic
  item7  mixed PutEvents        good entries with bad ones (Detail 300 deep, Time in ms): per-entry
                                errors, each good entry on the bus topic exactly once
  item13 public listener        the public port serves the waiting room only: /metrics, the
                                EventBridge API and the admin API are 404 there
  poison records                per kind (CDC, IoT, clickstream), 4 good records with a malformed
                                one at each position 0..4 (not JSON, an array, 300 and 1,100 levels
                                deep, schema-invalid samples from tests/data), each batch sent at once
                                to a one-partition topic: each poison on the dead-letter topic once,
                                with a reason a user can act on (not a bare `ValueError: ...`); each
                                good record routed once and exactly as the same record is routed
                                from a batch without poison (event id aside: a CDC id is its offset's)
  kill -9                       a producer writes --rate events/s (JSON and IoT) for --seconds; the
                                worker is killed with SIGKILL a third of the way in and restarted;
                                events in (acknowledged by the broker) vs unique events out (seq on
                                the probe output topic, event ids in the lake): no loss, duplicates allowed

Output: a table by class (tried, as expected, unexpected, first details), then, as the last line,
one JSON object {"bench": "hostile", "figures": {...}, "ratios": {...}}.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from streams.devtools import demo  # noqa: E402
from streams.devtools.broker import free_port, start_tansu  # noqa: E402
from streams.devtools.generator import TrafficGenerator  # noqa: E402
from streams.kafka.admin import ensure_topics  # noqa: E402

CT = "application/x-amz-json-1.1"
REGION = "local"  # bus.region: what requests are signed for
AK, SK = "AKIDPROBE" + secrets.token_hex(4).upper(), secrets.token_urlsafe(30)
BEARER = secrets.token_urlsafe(24)
ADMIN = secrets.token_urlsafe(24)
ROOM = demo.ROOM
PROBE_TOPICS = {"cdc": "probe.cdc", "iot": "probe.iot", "click": "probe.click"}
PROBE_OUT, STREAM_IN, STREAM_OUT = "probe.out", "probe.stream", "probe.stream.out"
DLQ = "eventweir.dlq"
AWS_ERRORS = {"ValidationException", "InvalidEventPatternException", "SerializationException",
              "LimitExceededException", "ResourceNotFoundException", "UnknownOperationException"}


# --- bookkeeping -------------------------------------------------------------------------------------
class Tally:
    def __init__(self):
        self.classes: dict[str, dict] = {}
        self.requests = 0
        self.requests_ok = 0
        self.server_errors = 0
        self.records = 0
        self.records_ok = 0
        self.log: list[str] = []  # every check but the bulk ones, for --verbose

    def add(self, cls: str, ok: bool, detail: str, status: int | None = None, record: bool = False) -> None:
        row = self.classes.setdefault(cls, {"tried": 0, "ok": 0, "bad": []})
        row["tried"] += 1
        row["ok"] += bool(ok)
        if not ok:
            row["bad"].append(detail)
        if detail:
            self.log.append(f"{'ok ' if ok else 'BAD'} {cls}: {detail}")
        if record:
            self.records += 1
            self.records_ok += bool(ok)
        else:
            self.requests += 1
            self.requests_ok += bool(ok)
            if status is not None and status >= 500:
                self.server_errors += 1


T = Tally()


# --- HTTP on a raw socket: exact request line, headers and body; answers read until close ----------
class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, seconds: float):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def json(self):
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def __str__(self) -> str:
        body = self.body[:160].decode("utf-8", "replace")
        return f"{self.status} {self.headers.get('content-type', '-')} {body!r}"


async def http(port: int, method: str, path: str, headers: dict | None = None, body: bytes = b"",
               raw: bytes | None = None, timeout: float = 10.0) -> Answer:
    """One request on a fresh connection (`raw`: the bytes to send as they are). Status 0: no answer."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if raw is None:
            head = {"Host": f"127.0.0.1:{port}", **(headers or {}), "Content-Length": str(len(body)),
                    "Connection": "close"}
            raw = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
                   + "\r\n").encode("utf-8") + body
        writer.write(raw)
        await writer.drain()
        try:
            status_line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return Answer(0, {}, b"(no answer within %.1fs)" % timeout, time.monotonic() - started)
        if not status_line:
            return Answer(0, {}, b"(connection closed without an answer)", time.monotonic() - started)
        status = int(status_line.split()[1])
        answer_headers: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        if "content-length" in answer_headers:
            data = await asyncio.wait_for(reader.readexactly(int(answer_headers["content-length"])), timeout)
        elif answer_headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int((await asyncio.wait_for(reader.readline(), timeout)).strip() or b"0", 16)
                if size == 0:
                    break
                data += await asyncio.wait_for(reader.readexactly(size + 2), timeout)
                data = data[:-2]
        else:
            data = await asyncio.wait_for(reader.read(), timeout)
        return Answer(status, answer_headers, data, time.monotonic() - started)
    finally:
        writer.close()


def sign(url: str, body: bytes, target: str | None, service: str = "events", region: str = REGION,
         extra: dict | None = None, signer=SigV4Auth) -> dict[str, str]:
    """Headers botocore's own signer produces for this request (`target` None: no X-Amz-Target)."""
    headers = {"Content-Type": CT, **({"X-Amz-Target": target} if target else {}), **(extra or {})}
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    signer(Credentials(AK, SK), service, region).add_auth(request)
    return {k: v for k, v in request.prepare().headers.items() if k.lower() not in ("content-length", "host")}


def raw_path(url: str) -> str:
    """The path and query as botocore's HTTP layer sends them (the server's request.raw_path):
    botocore's prepared URL, with what urllib3 percent-encodes on the way out (a space)."""
    prepared = AWSRequest(method="POST", url=url, data=b"").prepare()
    parts = prepared.url.split("://", 1)[1].split("/", 1)
    return ("/" + parts[1] if len(parts) > 1 else "/").replace(" ", "%20")


async def api(port: int, operation: str, params, path: str = "/") -> Answer:
    body = params if isinstance(params, bytes) else orjson.dumps(params)
    return await http(port, "POST", path, sign(f"http://127.0.0.1:{port}{path}", body, f"AWSEvents.{operation}"), body)


def aws_error(answer: Answer, statuses=(400,), types=AWS_ERRORS) -> bool:
    data = answer.json()
    return (answer.status in statuses and answer.headers.get("content-type", "").startswith("application/x-amz-json")
            and isinstance(data, dict) and data.get("__type") in types and bool(data.get("message")))


def entry_refused(answer: Answer) -> bool:
    """AWS's per-entry answer for a PutEvents entry it does not take: 200, FailedEntryCount 1, an ErrorCode."""
    data = answer.json()
    return (answer.status == 200 and isinstance(data, dict) and data.get("FailedEntryCount") == 1
            and "ErrorCode" in data["Entries"][0] and "EventId" not in data["Entries"][0])


def check(cls: str, what: str, answer: Answer, ok: bool) -> None:
    T.add(cls, ok, f"{what} -> {answer}", answer.status)


def nested(depth: int, leaf: str, open_: str = '{"a":', close: str = "}") -> str:
    return open_ * depth + leaf + close * depth


def pattern_of(chars: int) -> str:
    """A valid event pattern of exactly `chars` characters."""
    base = '{"source":["' + '"]}'
    return '{"source":["' + "x" * (chars - len(base)) + '"]}'


def entry(marker: str, **over) -> dict:
    return {"Source": "probe.put", "DetailType": "probe", "Detail": orjson.dumps({"marker": marker}).decode(), **over}


# --- the setup -------------------------------------------------------------------------------------
def probe_config(bootstrap: str, private: int, public: int, lake_dir: str, redis_url: str) -> dict:
    room = {"redis_url": redis_url, "key_prefix": f"eventweir:probe:{secrets.token_hex(4)}:", "admin_token": ADMIN,
            # bot protection off: these probes are about the join path's HTTP parsing (a control join must pass)
            "rooms": {ROOM: {"inlet": {"policy": "fixed_rate", "rate": 30, "interval_s": 60}, "bot_protection": False}}}
    base = demo.demo_config(bootstrap, private, room, lake_dir)
    data = base.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data["kafka"]["group_id"] = "eventweir-probe"
    data["consumer"].update(session_timeout_ms=6000, heartbeat_interval_ms=2000)
    data["http"]["public"] = {"host": "127.0.0.1", "port": public}
    data["api"] = {"access_keys": {AK: SK}, "bearer_tokens": [BEARER]}
    data["sources"] += [
        {"topic": PROBE_TOPICS["cdc"], "kind": "cdc", "source": "probe.cdc"},
        {"topic": PROBE_TOPICS["iot"], "kind": "iot", "source": "probe.iot", "enrich": [
            {"type": "join", "table": "devices", "key": "detail.device_id", "fields": ["site", "owner"],
             "into": "detail.device"}]},
        {"topic": PROBE_TOPICS["click"], "kind": "clickstream", "source": "probe.click", "enrich": [
            {"type": "user_agent"}, {"type": "ip", "truncate": True}]},
        {"topic": STREAM_IN, "kind": "json"},
    ]
    data["rules"] += [
        {"name": "probe-out", "EventPattern": {"source": ["probe.cdc", "probe.iot", "probe.click"]},
         "targets": [{"id": "out", "type": "kafka", "topic": PROBE_OUT}]},
        {"name": "probe-stream", "EventPattern": {"source": ["probe.stream"]},
         "targets": [{"id": "out", "type": "kafka", "topic": STREAM_OUT}]},
    ]
    return data


class WorkerProcess:
    def __init__(self, config_path: str, log_path: str):
        self.config_path, self.log_path, self.proc = config_path, log_path, None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "-c", self.config_path],
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_ready(port: int, proc: WorkerProcess, timeout: float = 90) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.proc.returncode}); see {proc.log_path}")
        try:
            if (await http(port, "GET", "/readyz", timeout=2)).status == 200:
                return time.monotonic() - started
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the worker was not ready after {timeout:.0f}s; see {proc.log_path}")


async def read_topic(bootstrap: str, topic: str) -> list:
    """Every record of `topic`, from the beginning to the end offsets as they are now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # a fresh client knows no topics until it asks
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                out.extend(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


def header(record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


# --- HTTP probe classes ------------------------------------------------------------------------------
async def probe_item8(port: int) -> None:
    cls = "item8 malformed, signed"
    deep_pattern = '{"a":' + "[" * 1000 + '"x"' + "]" * 1000 + "}"  # 1,000 deep in 2,009 characters
    deep_detail = nested(300, "1")
    cases = [
        ("TestEventPattern, pattern 1,000 deep", "TestEventPattern",
         {"EventPattern": deep_pattern, "Event": orjson.dumps({"id": "1", "source": "a", "detail-type": "b",
          "account": "000000000000", "time": "2024-01-01T00:00:00Z", "region": "local", "resources": [],
          "detail": {}}).decode()}, False),
        ("PutRule, pattern 1,000 deep", "PutRule", {"Name": "probe-deep", "EventPattern": deep_pattern}, False),
        ("PutEvents, Resources: 5", "PutEvents", {"Entries": [entry("res5", Resources=5)]}, True),
        ("PutEvents, Time: 1e20", "PutEvents", {"Entries": [entry("t1e20", Time=1e20)]}, True),
        ("PutEvents, Time: -1e13", "PutEvents", {"Entries": [entry("tneg", Time=-1e13)]}, True),
        ("PutEvents, Detail 300 deep", "PutEvents", {"Entries": [entry("deep", Detail=deep_detail)]}, True),
        ("ListRules, NextToken: 'abc'", "ListRules", {"NextToken": "abc"}, False),
        ("ListRules, Limit: 'ten'", "ListRules", {"Limit": "ten"}, False),
        ("DeleteRule, Name: []", "DeleteRule", {"Name": []}, False),
        ("PutRule, EventPattern as an object", "PutRule", {"Name": "probe-obj", "EventPattern": {"source": ["a"]}}, False),
        ("PutTargets, Targets: [5]", "PutTargets", {"Rule": "commerce", "Targets": [5]}, False),
        ("PutTargets, DeadLetterConfig.Arn: 5", "PutTargets", {"Rule": "commerce", "Targets": [
            {"Id": "t", "Arn": "kafka://probe.x", "DeadLetterConfig": {"Arn": 5}}]}, False),
    ]
    for what, op, params, per_entry in cases:
        answer = await api(port, op, params)
        check(cls, what, answer, aws_error(answer) or (per_entry and entry_refused(answer)))


async def probe_item9(port: int) -> None:
    cls = "item9 limits"
    for op, extra in (("TestEventPattern", {"Event": "{}"}), ("PutRule", {"Name": "probe-long"})):
        for chars, ok in ((2049, lambda a: aws_error(a)), (4097, lambda a: aws_error(a))):
            answer = await api(port, op, {"EventPattern": pattern_of(chars), **extra})
            check(cls, f"{op}, pattern of {chars} characters", answer, ok(answer))
    event = orjson.dumps({"id": "1", "source": "x", "detail-type": "b", "account": "000000000000",
                          "time": "2024-01-01T00:00:00Z", "region": "local", "resources": [], "detail": {}}).decode()
    answer = await api(port, "TestEventPattern", {"EventPattern": pattern_of(2048), "Event": event})
    check(cls, "TestEventPattern, pattern of exactly 2,048 characters (accepted)", answer,
          answer.status == 200 and (answer.json() or {}).get("Result") is False)
    answer = await api(port, "PutEvents", {"Entries": [entry("ttrue", Time=True)]})
    check(cls, "PutEvents, Time: true", answer, aws_error(answer) or entry_refused(answer))
    answer = await api(port, "PutEvents", {"Entries": [entry("tms", Time=int(time.time() * 1000))]})
    check(cls, "PutEvents, Time in milliseconds", answer, aws_error(answer) or entry_refused(answer))


async def metrics_bytes(port: int) -> int:
    answer = await http(port, "GET", "/metrics")
    return len(answer.body) if answer.status == 200 else -1


async def probe_item12(port: int) -> tuple[int, int]:
    cls = "item12 metric labels"
    before = await metrics_bytes(port)
    sem = asyncio.Semaphore(16)

    async def unauthenticated(i: int) -> None:
        target = f"AWSEvents.Probe{i:05d}" if i % 2 else f"Probe.{secrets.token_hex(6)}"
        async with sem:
            answer = await http(port, "POST", "/", {"Content-Type": CT, "X-Amz-Target": target}, b"{}")
        ok = aws_error(answer, (403,), {"MissingAuthenticationTokenException"})
        if not ok or i < 3:
            check(cls, f"unauthenticated X-Amz-Target {target}", answer, ok)
        else:  # counted without keeping 5,000 answers in memory
            T.add(cls, True, "", answer.status)

    await asyncio.gather(*(unauthenticated(i) for i in range(5000)))
    for i in range(50):
        answer = await api(port, f"Nope{i:03d}", {})
        ok = aws_error(answer, (400,), {"UnknownOperationException"})
        if not ok or i < 3:
            check(cls, f"signed unknown operation AWSEvents.Nope{i:03d}", answer, ok)
        else:
            T.add(cls, True, "", answer.status)
    after = await metrics_bytes(port)
    T.add(cls, 0 <= after - before <= 64 * 1024,
          f"/metrics grew from {before:,} to {after:,} bytes (bound: 64 KiB)", 200)
    return before, after


class UnsignedPayload(SigV4Auth):
    """botocore's signer with the payload hash UNSIGNED-PAYLOAD, as S3 clients send it."""

    def payload(self, request):
        return "UNSIGNED-PAYLOAD"


async def probe_item14(port: int) -> None:
    cls = "item14 sigv4 refusals"
    url, body = f"http://127.0.0.1:{port}/", b'{"NamePrefix": "probe"}'
    refused = lambda a: aws_error(a, (403,), {"InvalidSignatureException", "IncompleteSignature",  # noqa: E731
                                              "UnrecognizedClientException", "SignatureDoesNotMatch",
                                              "MissingAuthenticationTokenException", "AccessDeniedException"})
    target = "AWSEvents.ListRules"
    cases = [
        ("scope service s3", sign(url, body, target, service="s3"), body),
        ("scope region xx-nowhere-9", sign(url, body, target, region="xx-nowhere-9"), body),
        ("UNSIGNED-PAYLOAD, body as signed",
         sign(url, body, target, extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, signer=UnsignedPayload), body),
        ("UNSIGNED-PAYLOAD, body changed in transit",
         sign(url, body, target, extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, signer=UnsignedPayload),
         b'{"NamePrefix": "x"}'),
        ("X-Amz-Target not signed (added after signing)", {**sign(url, body, None), "X-Amz-Target": target}, body),
        ("X-Amz-Target changed after signing (replay as DeleteRule)",
         {**sign(url, body, target), "X-Amz-Target": "AWSEvents.DeleteRule"}, body),
        ("body changed after signing", sign(url, body, target), body + b" "),
        ("unknown access key", {**sign(url, body, target)}, body),
    ]
    cases[-1] = ("unknown access key", {k: (v.replace(AK, "AKIDNOBODY") if k == "Authorization" else v)
                                        for k, v in cases[-1][1].items()}, body)
    for what, headers, sent in cases:
        answer = await http(port, "POST", "/", headers, sent)
        check(cls, what, answer, refused(answer))


async def probe_botocore_shapes(port: int) -> None:
    from multidict import CIMultiDict

    from streams.http.eventbridge.sigv4 import SignatureError, verify

    cls = "item14 botocore shapes"
    base = f"http://127.0.0.1:{port}"
    for suffix in ["/", "/?b=2&a=1", "/?Z=1&a=2&a=1", "/a path/x", "/?q=a b&r=%2F", "/events/", "/x/../y",
                   "/?empty=&flag", "/~user/%7E"]:
        url, body = base + suffix, b'{"NamePrefix": "probe"}'
        path = raw_path(url)
        headers = sign(url, body, "AWSEvents.ListRules")
        answer = await http(port, "POST", path, headers, body)
        if path.split("?")[0] == "/":
            check(cls, f"POST {path}", answer, answer.status == 200)
            continue
        wire = CIMultiDict(headers)
        wire["Host"] = f"127.0.0.1:{port}"
        try:
            verify("POST", path, wire, body, {AK: SK}, regions={REGION})
            verified = "verifies"
        except SignatureError as exc:
            verified = f"refused: {exc.code} {exc.message}"
        T.add(cls, answer.status == 404 and verified == "verifies",
              f"POST {path} -> {answer} (not the API's path); signature {verified}", answer.status)


async def probe_item16(port: int) -> None:
    cls = "item16 room admin"
    auth = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    good = {"inlet": {"policy": "fixed_rate", "rate": 10, "interval_s": 60}}
    bad = [("heartbeat_s: 1e306", {**good, "heartbeat_s": 1e306}),
           ("heartbeat_s: -1", {**good, "heartbeat_s": -1}),
           ("heartbeat_s: 'soon'", {**good, "heartbeat_s": "soon"}),
           ("session_duration_s: 1e306", {**good, "session_duration_s": 1e306}),
           ("inlet rate: 1e306", {"inlet": {"policy": "fixed_rate", "rate": 1e306, "interval_s": 60}}),
           ("inlet interval_s: 1e-300", {"inlet": {"policy": "fixed_rate", "rate": 10, "interval_s": 1e-300}})]
    for what, settings in bad:
        answer = await http(port, "PUT", "/waitingroom/admin/rooms/probe-bounds", auth, orjson.dumps(settings))
        check(cls, f"PUT room, {what}", answer, answer.status == 400)
    for room in ["d\u0435mo-sale", "\uff44emo-sale", "demo\u200bsale", "caf\u00e9", "r\u00f6om"]:
        path = "/waitingroom/admin/rooms/" + quote(room, safe="")
        answer = await http(port, "PUT", path, auth, orjson.dumps(good))
        check(cls, f"PUT room id {room!r}", answer, 400 <= answer.status < 500)
    answer = await http(port, "PUT", "/waitingroom/admin/rooms/probe-ok", auth, orjson.dumps(good))
    check(cls, "PUT a valid room probe-ok (control)", answer, answer.status == 200)
    await http(port, "DELETE", "/waitingroom/admin/rooms/probe-ok", auth)
    answer = await http(port, "GET", f"/waitingroom/admin/rooms/{ROOM}/counters", auth)
    check(cls, f"GET counters of {ROOM} after the refusals (still served)", answer, answer.status == 200)


async def probe_lean_path(public: int) -> None:
    cls = "item17 lean path bare LF"
    for what, raw in [
        ("join, bare LF", f"POST /waitingroom/rooms/{ROOM}/join HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                          "Content-Length: 2\n\n{}".encode()),
        ("status, bare LF", f"GET /waitingroom/rooms/{ROOM}/status?request_id=abc HTTP/1.1\nHost: x\n\n".encode()),
        ("join, mixed CRLF and LF", f"POST /waitingroom/rooms/{ROOM}/join HTTP/1.1\r\nHost: x\n"
                                    "Content-Length: 2\r\n\r\n{}".encode()),
    ]:
        answer = await http(public, "", "", raw=raw, timeout=2.0)
        check(cls, what, answer, answer.status == 400 and answer.seconds < 2.0)
    answer = await http(public, "POST", f"/waitingroom/rooms/{ROOM}/join", {"Content-Type": "application/json"}, b"{}")
    check(cls, "join, CRLF (control)", answer, answer.status == 200)


async def probe_bearer(port: int) -> None:
    cls = "item17 bearer scheme"
    body = b'{"NamePrefix": "probe"}'
    for scheme, token, expect in [("bearer", BEARER, 200), ("BEARER", BEARER, 200), ("Bearer", BEARER, 200),
                                  ("bearer", "not-the-token", 403)]:
        answer = await http(port, "POST", "/", {"Content-Type": CT, "X-Amz-Target": "AWSEvents.ListRules",
                                                "Authorization": f"{scheme} {token}"}, body)
        ok = answer.status == 200 if expect == 200 else aws_error(answer, (403,), {"UnrecognizedClientException"})
        check(cls, f"EventBridge API, Authorization: {scheme} {'<token>' if token == BEARER else token}", answer, ok)
    answer = await http(port, "GET", "/waitingroom/admin/rooms", {"Authorization": f"bearer {ADMIN}"})
    check(cls, "waiting-room admin API, Authorization: bearer <admin token>", answer, answer.status == 200)


async def probe_putevents(port: int) -> dict:
    """Unknown bus and mixed entries; returns {marker: expected count on the bus topic}."""
    expect: dict[str, int] = {}
    cls = "item17 unknown bus"
    for name in ["no-such-bus", "arn:aws:events:local:000000000000:event-bus/no-such-bus"]:
        marker = f"unknown-bus-{secrets.token_hex(4)}"
        answer = await api(port, "PutEvents", {"Entries": [entry(marker, EventBusName=name)]})
        data = answer.json() or {}
        check(cls, f"PutEvents, EventBusName {name}", answer, answer.status == 200 and data.get("FailedEntryCount") == 0
              and "EventId" in (data.get("Entries") or [{}])[0])
        expect[marker] = 0
    cls = "item7 mixed PutEvents"
    markers = [f"mixed-{i}-{secrets.token_hex(4)}" for i in range(3)]
    entries = [entry(markers[0]), entry("bad-deep", Detail=nested(300, "1")), entry(markers[1]),
               entry("bad-ms", Time=int(time.time() * 1000)), entry(markers[2])]
    answer = await api(port, "PutEvents", {"Entries": entries})
    data = answer.json() or {}
    results = data.get("Entries") or []
    shape = (answer.status == 200 and data.get("FailedEntryCount") == 2 and len(results) == 5
             and all("EventId" in results[i] for i in (0, 2, 4)) and all("ErrorCode" in results[i] for i in (1, 3)))
    check(cls, "PutEvents [good, Detail 300 deep, good, Time in ms, good]", answer, shape)
    expect.update({m: 1 for m in markers})
    expect.update({"res5": 0, "t1e20": 0, "tneg": 0, "deep": 0, "ttrue": 0, "tms": 0, "bad-deep": 0, "bad-ms": 0})
    return expect


async def check_bus(bootstrap: str, expect: dict) -> None:
    seen: dict[str, int] = {}
    for record in await read_topic(bootstrap, demo.BUS):
        try:
            marker = orjson.loads(record.value).get("detail", {}).get("marker")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            continue
        if marker:
            seen[marker] = seen.get(marker, 0) + 1
    for marker, count in expect.items():
        cls = ("item7 mixed PutEvents" if marker.startswith(("mixed", "bad-")) else
               "item17 unknown bus" if marker.startswith("unknown") else
               "item9 limits" if marker in ("ttrue", "tms") else "item8 malformed, signed")
        T.add(cls, seen.get(marker, 0) == count, f"bus topic holds {seen.get(marker, 0)} event(s) with marker "
              f"{marker!r}, expected {count}", None, record=True)


async def probe_public(public: int) -> None:
    cls = "item13 public listener"
    body = b'{"NamePrefix": "probe"}'
    url = f"http://127.0.0.1:{public}/"
    for what, method, path, headers, sent in [
        ("GET /metrics", "GET", "/metrics", {}, b""),
        ("POST / (EventBridge ListRules, signed)", "POST", "/", sign(url, body, "AWSEvents.ListRules"), body),
        ("POST / (EventBridge ListRules, bearer)", "POST", "/", {"Content-Type": CT, "X-Amz-Target":
                                                                  "AWSEvents.ListRules",
                                                                  "Authorization": f"Bearer {BEARER}"}, body),
        ("GET admin rooms", "GET", "/waitingroom/admin/rooms", {"Authorization": f"Bearer {ADMIN}"}, b""),
        ("PUT admin room", "PUT", "/waitingroom/admin/rooms/probe-pub", {"Authorization": f"Bearer {ADMIN}"},
         b'{"inlet": {"policy": "fixed_rate", "rate": 1, "interval_s": 60}}'),
        ("POST admin keys/rotate", "POST", "/waitingroom/admin/keys/rotate", {"Authorization": f"Bearer {ADMIN}"}, b""),
    ]:
        answer = await http(public, method, path, headers, sent)
        check(cls, f"public {what}", answer, answer.status == 404)
    answer = await http(public, "GET", f"/waitingroom/rooms/{ROOM}/")
    check(cls, "public GET the waiting page (control)", answer, answer.status == 200)


# --- Kafka side: poison records ----------------------------------------------------------------------
def poison_sets() -> dict[str, list[tuple[str, bytes]]]:
    def invalid(name: str) -> list[tuple[str, bytes]]:
        lines = (ROOT / "tests" / "data" / name).read_text().splitlines()
        return [(f"{(d := json.loads(line)).get('field')}:{d.get('rule')}", orjson.dumps(d["doc"])) for line in lines[:2]]

    common = [("not JSON", b"\xff\xfe\x00garbage"), ("a JSON array", b"[1, 2, 3]"),
              ("300 deep", nested(300, "1").encode()), ("1,100 deep", nested(1100, "1").encode())]
    return {"cdc": common + invalid("debezium_invalid.jsonl"), "iot": common + invalid("iot_invalid.jsonl"),
            "click": common + invalid("clickstream_invalid.jsonl")}


def good_records(kind: str) -> list[tuple[bytes, bytes]]:
    gen = TrafficGenerator(seed={"cdc": 11, "iot": 12, "click": 13}[kind])
    now = int(time.time() * 1000)
    if kind == "cdc":
        return [gen.cdc(now + i)[0] for i in range(4)]
    return [(gen.iot if kind == "iot" else gen.click)(now + i) for i in range(4)]


async def poison(bootstrap: str) -> list[str]:
    """Produce the clean and poisoned batches; returns the probe ids of the poison records."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=200, max_batch_size=1 << 20)
    await producer.start()
    poison_ids = []
    try:
        for kind, poisons in poison_sets().items():
            good = good_records(kind)
            topic = PROBE_TOPICS[kind]
            batches = [[(f"clean-{kind}-{i}", k, v) for i, (k, v) in enumerate(good)]]
            for p in range(max(len(good) + 1, len(poisons))):  # every position, every poison
                name, bad = poisons[p % len(poisons)]
                batch = [(f"p{p}-{kind}-{i}", k, v) for i, (k, v) in enumerate(good)]
                batch.insert(p % (len(good) + 1), (f"poison-{kind}-{p}-{name}", b"bad", bad))
                poison_ids.append(f"poison-{kind}-{p}-{name}")
                batches.append(batch)
            for batch in batches:  # each batch sent together: one producer batch, one fetch
                futures = [await producer.send(topic, key=k, value=v, partition=0, headers=[("probe-id", pid.encode())])
                           for pid, k, v in batch]
                await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return poison_ids


async def check_poison(bootstrap: str, poison_ids: list[str]) -> None:
    cls = "poison records"
    out: dict[str, list] = {}
    for record in await read_topic(bootstrap, PROBE_OUT):
        pid = header(record, "probe-id")
        if pid:
            out.setdefault(pid, []).append(orjson.loads(record.value))
    dead: dict[str, list] = {}
    for record in await read_topic(bootstrap, DLQ):
        pid = header(record, "probe-id")
        if pid:
            dead.setdefault(pid, []).append(record)
    comparable = lambda e: {k: v for k, v in e.items() if k != "id"}  # noqa: E731 - a CDC id is its offset's
    for kind in PROBE_TOPICS:
        for p in range(len({pid for pid in poison_ids if pid.startswith(f"poison-{kind}-")})):
            for i in range(4):
                pid, clean = f"p{p}-{kind}-{i}", out.get(f"clean-{kind}-{i}", [])
                got = out.get(pid, [])
                ok = len(got) == 1 and len(clean) == 1 and comparable(got[0]) == comparable(clean[0])
                detail = f"good record {pid}: {len(got)} output(s), clean twin {len(clean)}"
                if got and clean and comparable(got[0]) != comparable(clean[0]):
                    detail += f"; differs: {orjson.dumps(comparable(got[0]))[:200]!r} vs clean " \
                              f"{orjson.dumps(comparable(clean[0]))[:200]!r}"
                T.add(cls, ok, detail, None, record=True)
    for pid in poison_ids:
        letters = dead.get(pid, [])
        reasons = [f"{header(r, 'eventweir-stage')}/{header(r, 'eventweir-error')}: {header(r, 'eventweir-message')}"
                   for r in letters]
        message = (header(letters[0], "eventweir-message") or "") if letters else ""
        # a reason a user can act on (issue 21 items 9 and 21), not a bare Python exception
        actionable = bool(message) and not BARE_PYTHON.match(message)
        ok = len(letters) == 1 and actionable and pid not in out
        detail = f"poison {pid}: {len(letters)} dead letter(s) {reasons[:1]}, routed {len(out.get(pid, []))}"
        if out.get(pid):
            detail += f" as {orjson.dumps(out[pid][0])[:300]!r}"
        elif letters and not actionable:
            detail += " (a bare Python error, not a reason)"
        T.add(cls, ok, detail, None, record=True)
        REASONS[pid] = reasons[0] if reasons else "(none)"


REASONS: dict[str, str] = {}
BARE_PYTHON = re.compile(r"^[A-Z]\w*(Error|Exception)\b")


# --- Kafka side: kill -9 mid-stream ------------------------------------------------------------------
async def stream(bootstrap: str, rate: int, seconds: float, worker: WorkerProcess, port: int) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    gen = TrafficGenerator(seed=99)
    acked = {"json": 0, "iot": set()}
    restart = {}

    async def produce() -> None:
        seq, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            futures = []
            for _ in range(max(1, rate // 10)):
                seq += 1
                futures.append(await producer.send(STREAM_IN, key=str(seq).encode(), value=orjson.dumps(
                    {"source": "probe.stream", "seq": seq, "at": time.time()})))
                key, value = gen.iot()
                futures.append(await producer.send(demo.TOPICS["iot"], key=key, value=value))
                futures[-1].add_done_callback(lambda f, v=value: f.exception() or acked["iot"].add(orjson.loads(v)["message_id"]))
            results = await asyncio.gather(*futures, return_exceptions=True)
            acked["json"] += sum(1 for r in results[0::2] if not isinstance(r, BaseException))
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))

    async def killer() -> None:
        await asyncio.sleep(seconds / 3)
        restart["stream_out_before_kill"] = len(await read_topic(bootstrap, STREAM_OUT))
        worker.kill9()
        restart["killed_at"] = time.monotonic()
        worker.start()
        restart["ready_after_s"] = round(await wait_ready(port, worker, timeout=120), 1)

    try:
        await asyncio.gather(produce(), killer())
    finally:
        await producer.stop()
    return {"acked": acked, "restart": restart}


def lake_ids(lake_dir: str) -> list[str]:
    ids = []
    for folder, _, files in os.walk(lake_dir):
        if "_eventweir" in folder or "source=eventweir.iot" not in folder:
            continue
        for name in files:
            if name.startswith("."):
                continue
            data = Path(folder, name).read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            for line in data.splitlines():
                if line.strip():
                    ids.append(orjson.loads(line).get("id"))
    return ids


async def drain_counts(bootstrap: str, lake_dir: str, acked: dict, wait_s: float = 60) -> dict:
    """Poll the outputs until everything acknowledged is out, or `wait_s` passes; then count."""
    deadline = time.monotonic() + wait_s
    while True:
        seqs = [orjson.loads(r.value).get("seq") for r in await read_topic(bootstrap, STREAM_OUT)]
        ids = [i for i in lake_ids(lake_dir) if i in acked["iot"]]
        if (len(set(seqs)) >= acked["json"] and len(set(ids)) >= len(acked["iot"])) or time.monotonic() > deadline:
            break
        await asyncio.sleep(3)
    return {"json_in": acked["json"], "json_out_unique": len(set(seqs)), "json_out_total": len(seqs),
            "iot_in": len(acked["iot"]), "iot_lake_unique": len(set(ids)), "iot_lake_total": len(ids)}


# --- main --------------------------------------------------------------------------------------------
def table() -> str:
    lines = [f"{'class':<28} {'tried':>6} {'as expected':>12} {'unexpected':>11}  first details",
             "-" * 100]
    for cls, row in T.classes.items():
        bad = row["tried"] - row["ok"]
        first = " | ".join(row["bad"][:3])
        lines.append(f"{cls:<28} {row['tried']:>6} {row['ok']:>12} {bad:>11}  {first}")
    return "\n".join(lines)


async def main(args) -> int:
    workdir = tempfile.mkdtemp(prefix="eventweir-hostile-")
    redis_url = os.environ.get("EVENTWEIR_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not demo.redis_reachable(redis_url):
        print(f"no Redis at {redis_url}: the waiting room needs one (set EVENTWEIR_REDIS_URL)", file=sys.stderr)
        return 2
    print(f"work dir {workdir}; starting Tansu ...", flush=True)
    broker = start_tansu()
    bootstrap = broker.bootstrap_servers
    worker = config = None
    try:
        topics = {t: 3 for t in list(demo.TOPICS.values()) + demo.OUTPUTS + [demo.BUS]}
        topics.update({t: 1 for t in PROBE_TOPICS.values()}, **{PROBE_OUT: 1, STREAM_IN: 3, STREAM_OUT: 3})
        await ensure_topics(bootstrap, topics)
        await ensure_topics(bootstrap, {demo.CONTROL: 1, demo.REGISTRY: 1}, compacted={demo.CONTROL, demo.REGISTRY})
        await demo.fill_registry(bootstrap)
        private, public = free_port(), free_port()
        lake_dir = os.path.join(workdir, "lake")
        os.makedirs(lake_dir)
        config_path = os.path.join(workdir, "config.yaml")
        config = probe_config(bootstrap, private, public, lake_dir, redis_url)
        Path(config_path).write_text(json.dumps(config, indent=1))  # JSON is YAML
        worker = WorkerProcess(config_path, os.path.join(workdir, "worker.log"))
        worker.start()
        print(f"worker ready after {await wait_ready(private, worker):.1f}s (private :{private}, public :{public})",
              flush=True)

        started = time.monotonic()
        await probe_item8(private)
        await probe_item9(private)
        metrics_before, metrics_after = await probe_item12(private)
        await probe_item14(private)
        await probe_botocore_shapes(private)
        await probe_item16(private)
        await probe_lean_path(public)
        await probe_bearer(private)
        expect = await probe_putevents(private)
        await probe_public(public)
        print(f"HTTP probes done in {time.monotonic() - started:.0f}s; poison records ...", flush=True)
        poison_ids = await poison(bootstrap)
        await asyncio.sleep(3)
        await check_bus(bootstrap, expect)
        await check_poison(bootstrap, poison_ids)

        print(f"kill -9 run: {args.rate} JSON + {args.rate} IoT events/s for {args.seconds}s ...", flush=True)
        run = await stream(bootstrap, args.rate, args.seconds, worker, private)
        counts = await drain_counts(bootstrap, lake_dir, run["acked"])
        events_in = counts["json_in"] + counts["iot_in"]
        events_out = counts["json_out_unique"] + counts["iot_lake_unique"]
        total_out = counts["json_out_total"] + counts["iot_lake_total"]
        T.add("kill -9 mid-stream", events_out >= events_in,
              f"in {events_in}, out unique {events_out}: {counts}", None, record=True)
    finally:
        if worker:
            worker.stop()
        broker.stop()
        if config:
            await demo.forget_demo_room({"redis_url": redis_url, **config["waitingroom"]})  # its keys, out of Redis

    if args.verbose:
        print("\nevery check (of the bulk ones in item12, the first 3 of each kind and any unexpected):")
        print("\n".join(T.log))
    print()
    print(table())
    print()
    print(f"kill -9: {counts}; {run['restart'].get('stream_out_before_kill')} JSON events were out when the "
          f"worker was killed; it was ready again {run['restart'].get('ready_after_s')}s after the kill")
    print("dead-letter reasons (poison id -> stage/error: message):")
    for pid, reason in REASONS.items():
        print(f"  {pid} -> {reason[:150]}")
    figures = {
        "requests_tried": T.requests, "requests_as_expected": T.requests_ok, "server_errors_5xx": T.server_errors,
        "records_checked": T.records, "records_as_expected": T.records_ok,
        "metrics_bytes_before": metrics_before, "metrics_bytes_after": metrics_after,
        "events_in": events_in, "events_out_unique": events_out, "events_lost": max(0, events_in - events_out),
        "duplicates": total_out - events_out, "worker_ready_after_kill_s": run["restart"].get("ready_after_s"),
    }
    ratios = {"as_expected_share": round(T.requests_ok / max(1, T.requests), 4),
              "records_as_expected_share": round(T.records_ok / max(1, T.records), 4),
              "delivered_share": round(events_out / max(1, events_in), 4)}
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"bench": "hostile", "figures": figures, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="events/s of each kind during the kill -9 run")
    parser.add_argument("--seconds", type=float, default=20, help="length of the kill -9 run")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (config, worker log, lake)")
    parser.add_argument("--verbose", action="store_true", help="print every check with the answer it got")
    sys.exit(asyncio.run(main(parser.parse_args())))
