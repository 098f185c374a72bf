"""HttpLookup against a real local HTTP service: cache, TTLs, eviction, single-flight, the
concurrency bound, timeouts and the on_missing fallbacks; and async stages in Chain and Pipeline."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import orjson
import pytest
from prometheus_client import REGISTRY

from processors.chain import Chain
from processors.core import Event
from processors.decode import Decoder
from processors.pipeline import Pipeline
from processors.routing.router import Route, Router, RouteTarget
from streams.runtime.http_fetcher import http_lookup
from tests.integration.http_endpoint import LookupService
from tests.samples import record

PROFILES = {"u1": {"tier": "gold", "country": "NL", "email": "a@x"}, "u2": {"tier": "free", "country": "FR"}}


def events(*users, topic="clicks"):
    """One event per user id (None: an event without the key)."""
    return [Event(record(topic, {}, offset=i), {"detail": {} if u is None else {"user_id": u}, "n": i})
            for i, u in enumerate(users)]


def joined(out, name="profile"):
    return [(e.body["n"], e.body["detail"].get(name)) for e in out]


def metric(name: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("eventweir_lookup_requests_total", {"lookup": name, "outcome": outcome}) or 0.0


@pytest.fixture
async def service():
    async with LookupService(PROFILES) as svc:
        yield svc


async def test_joins_fields_keeps_order_and_serves_repeats_from_the_cache(service):
    lookup = http_lookup("profile", service.url, "detail.user_id", fields=["tier", "country"])
    before = [metric("profile", outcome) for outcome in ("hit", "miss", "error")]
    requests_before = REGISTRY.get_sample_value("eventweir_lookup_seconds_count", {"lookup": "profile"}) or 0
    try:
        out = await lookup.process_async(events("u1", "u2", "u1", "u3", None), failures := [])
        assert joined(out) == [(0, {"tier": "gold", "country": "NL"}), (1, {"tier": "free", "country": "FR"}),
                               (2, {"tier": "gold", "country": "NL"}), (3, None), (4, None)]
        assert failures == [] and service.requests == {"u1": 1, "u2": 1, "u3": 1}
        # the next batch needs no request at all, including for the key the service does not know
        out = await lookup.process_async(events("u2", "u3", "u1"), failures)
        assert [n for n, _ in joined(out)] == [0, 1, 2] and service.total == 3
        assert (lookup.hits, lookup.misses, lookup.errors) == (3, 4, 0)
        after = [metric("profile", outcome) for outcome in ("hit", "miss", "error")]
        assert [a - b for a, b in zip(after, before)] == [3, 4, 0]
        assert REGISTRY.get_sample_value("eventweir_lookup_seconds_count", {"lookup": "profile"}) - requests_before == 3
    finally:
        await lookup.close()


async def test_fields_mapping_into_and_the_whole_row(service):
    renamed = http_lookup("p", service.url, "detail.user_id", fields={"tier": "plan"}, into="enriched.user")
    whole = http_lookup("p", service.url, "detail.user_id")
    try:
        [event] = await renamed.process_async(events("u1"), [])
        assert event.body["enriched"] == {"user": {"plan": "gold"}}
        [event] = await whole.process_async(events("u1"), [])
        assert event.body["detail"]["p"] == PROFILES["u1"]
    finally:
        await renamed.close()
        await whole.close()


async def test_entries_expire_after_their_ttl(service):
    lookup = http_lookup("ttl", service.url, "detail.user_id", ttl_s=0.15, negative_ttl_s=0.15)
    try:
        await lookup.process_async(events("u1", "nobody"), [])
        service.rows["u1"] = {"tier": "platinum"}
        service.rows["nobody"] = {"tier": "new"}
        out = await lookup.process_async(events("u1", "nobody"), [])
        assert joined(out, "ttl") == [(0, PROFILES["u1"]), (1, None)]  # both still cached
        await asyncio.sleep(0.2)
        out = await lookup.process_async(events("u1", "nobody"), [])
        assert joined(out, "ttl") == [(0, {"tier": "platinum"}), (1, {"tier": "new"})]
        assert service.requests == {"u1": 2, "nobody": 2}
    finally:
        await lookup.close()


async def test_not_found_is_cached_for_the_negative_ttl_only(service):
    lookup = http_lookup("neg", service.url, "detail.user_id", ttl_s=60, negative_ttl_s=0.15)
    try:
        await lookup.process_async(events("late"), [])
        service.rows["late"] = {"tier": "gold"}
        [event] = await lookup.process_async(events("late"), [])
        assert "neg" not in event.body["detail"] and service.requests == {"late": 1}
        await asyncio.sleep(0.2)
        [event] = await lookup.process_async(events("late"), [])
        assert event.body["detail"]["neg"] == {"tier": "gold"} and service.requests == {"late": 2}
    finally:
        await lookup.close()


async def test_the_cache_holds_at_most_max_entries_evicting_the_oldest(service):
    service.rows.update({k: {"k": k} for k in "abc"})
    lookup = http_lookup("small", service.url, "detail.user_id", max_entries=2)
    try:
        await lookup.process_async(events("a", "b", "c"), [])  # a is evicted by c
        out = await lookup.process_async(events("b", "c", "a"), [])
        assert [v for _, v in joined(out, "small")] == [{"k": "b"}, {"k": "c"}, {"k": "a"}]
        assert service.requests == {"a": 2, "b": 1, "c": 1}
    finally:
        await lookup.close()


async def test_concurrent_batches_share_one_request_per_key(service):
    service.delay_s = 0.1
    lookup = http_lookup("shared", service.url, "detail.user_id")
    try:
        outs = await asyncio.gather(*(lookup.process_async(events("u1", "u1", "u2"), []) for _ in range(5)))
        assert service.requests == {"u1": 1, "u2": 1}
        assert all(joined(out, "shared") == joined(outs[0], "shared") for out in outs)
        assert outs[0][0].body["detail"]["shared"] == PROFILES["u1"]
    finally:
        await lookup.close()


async def test_at_most_concurrency_requests_in_flight(service):
    service.rows.update({f"k{i}": {"i": i} for i in range(20)})
    service.delay_s = 0.03
    lookup = http_lookup("bounded", service.url, "detail.user_id", concurrency=3)
    try:
        out = await lookup.process_async(events(*(f"k{i}" for i in range(20))), [])
        assert [v["i"] for _, v in joined(out, "bounded")] == list(range(20))
        assert service.max_in_flight == 3 and service.total == 20
    finally:
        await lookup.close()


async def test_a_slow_service_times_out_and_the_event_is_dead_lettered_with_the_url(service):
    service.delay["slow"] = 1.0
    lookup = http_lookup("slow", service.url, "detail.user_id", timeout_s=0.2, on_missing="dead-letter")
    try:
        started = time.monotonic()
        out = await lookup.process_async(events("u1", "slow"), failures := [])
        assert time.monotonic() - started < 0.6
        assert joined(out, "slow") == [(0, PROFILES["u1"])]
        [failure] = failures
        assert (failure.record.offset, failure.stage, failure.error) == (1, "enrich", "lookup_error")
        assert service.url.replace("{key}", "slow") in failure.message and "timed out after 0.2s" in failure.message
        assert lookup.errors == 1 and metric("slow", "error") == 1
    finally:
        await lookup.close()


async def test_errors_fall_back_to_on_missing_and_are_retried_soon(service):
    service.status["down"] = 503
    service.body["garbled"] = b"<html>oops</html>"
    service.body["listed"] = b"[1, 2]"
    lookup = http_lookup("fb", service.url, "detail.user_id", fields=["tier"], on_missing="default",
                        default={"tier": "unknown"})
    lookup.error_ttl_s = 0.1
    try:
        out = await lookup.process_async(events("u1", "down", "garbled", "listed", "nobody"), failures := [])
        assert [v for _, v in joined(out, "fb")] == [{"tier": "gold"}] + [{"tier": "unknown"}] * 4
        assert failures == [] and (lookup.misses, lookup.errors) == (2, 3)
        # an error is kept only briefly: the same key in the next sub-batch does not ask again ...
        await lookup.process_async(events("down"), [])
        assert service.requests["down"] == 1
        # ... and once the service is back, the next batch after error_ttl_s is enriched
        del service.status["down"]
        service.rows["down"] = {"tier": "back"}
        await asyncio.sleep(0.15)
        [event] = await lookup.process_async(events("down"), [])
        assert event.body["detail"]["fb"] == {"tier": "back"} and service.requests["down"] == 2
    finally:
        await lookup.close()


async def test_dead_letter_reasons_name_the_url_and_the_error(service):
    service.status["down"] = 503
    service.body["garbled"] = b"not json"
    lookup = http_lookup("dl", service.url, "detail.user_id", on_missing="dead-letter")
    try:
        out = await lookup.process_async(events("u1", "down", "garbled", "nobody", None), failures := [])
        assert [e.body["n"] for e in out] == [0]
        reasons = {f.record.offset: (f.error, f.message) for f in failures}
        url = service.url.replace("{key}", "")
        assert reasons[1][0] == "lookup_error" and f"GET {url}down: HTTP 503" in reasons[1][1]
        assert reasons[2][0] == "lookup_error" and "not a JSON object" in reasons[2][1]
        assert reasons[3] == ("lookup_missing", f"lookup 'dl' found no row for detail.user_id='nobody' (GET {url}nobody: 404)")
        assert reasons[4] == ("lookup_missing", "lookup 'dl': the event has no detail.user_id")
    finally:
        await lookup.close()


async def test_a_service_that_is_not_there_passes_events_unchanged():
    async with LookupService() as gone:
        url = gone.url  # a port nothing listens on once the service has stopped
    lookup = http_lookup("gone", url, "detail.user_id", timeout_s=0.5)
    try:
        out = await lookup.process_async(events("u1", "u2"), [])
        assert joined(out, "gone") == [(0, None), (1, None)] and lookup.errors == 2
    finally:
        await lookup.close()


async def test_keys_are_url_quoted_and_numbers_are_keys_too(service):
    service.rows.update({"a/b c": {"odd": True}, "42": {"n": 42}})
    lookup = http_lookup("q", service.url, "detail.user_id")
    try:
        out = await lookup.process_async(events("a/b c", 42), [])
        assert [v for _, v in joined(out, "q")] == [{"odd": True}, {"n": 42}]
    finally:
        await lookup.close()


async def test_an_injected_fetch_is_used_and_left_open():
    calls = []

    async def fetch(url):
        calls.append(url)
        return (200, {"via": "injected"}) if url.endswith("/1") else (404, None)

    lookup = http_lookup("inj", "svc://x/{key}", "id", fetch=fetch)
    out = await lookup.process_async([Event(record("t", {}), {"id": 1}), Event(record("t", {}), {"id": 2})], [])
    assert [e.body.get("detail") for e in out] == [{"inj": {"via": "injected"}}, None]
    assert calls == ["svc://x/1", "svc://x/2"]
    await lookup.close()


async def test_close_releases_the_session_it_made(service):
    lookup = http_lookup("closing", service.url, "detail.user_id")
    await lookup.process_async(events("u1"), [])
    session = lookup._fetcher._session
    await lookup.close()
    assert session.closed


def test_bad_settings_are_refused_with_what_was_expected():
    ok = dict(name="x", url="http://h/{key}", key="detail.id")
    with pytest.raises(ValueError, match=r"on_missing='ignore': expected one of pass, default, dead-letter"):
        http_lookup(**ok, on_missing="ignore")
    with pytest.raises(ValueError, match="needs a `default` dict"):
        http_lookup(**ok, on_missing="default")
    with pytest.raises(ValueError, match=r"expected a template with \{key\}"):
        http_lookup(**(ok | {"url": "http://h/users"}))
    with pytest.raises(ValueError, match="concurrency=0: expected a positive integer"):
        http_lookup(**ok, concurrency=0)
    with pytest.raises(ValueError, match="timeout_s=0: expected seconds > 0"):
        http_lookup(**ok, timeout_s=0)
    with pytest.raises(ValueError, match="field path"):
        http_lookup(**(ok | {"key": "detail..id"}))


def test_processors_do_not_import_aiohttp():
    code = "import sys, processors.enrich, processors.enrich.lookup; assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- async stages in Chain and Pipeline ---------------------------------------------------------

class AsyncExploding:
    """An async stage with a bug that only some events trigger."""
    name = "enrich"

    def __init__(self):
        self.batches = 0

    async def process_async(self, events, failures):
        self.batches += 1
        await asyncio.sleep(0)
        for event in events:
            if event.body.get("boom"):
                raise KeyError("missing reference")
            event.body["seen"] = True
        return events


async def test_chain_run_async_isolates_the_poison_events_of_an_async_stage():
    records = [record("in", {"n": i, "boom": i == 3}, offset=i) for i in range(6)] + [record("in", b"{bad", offset=6)]
    stage = AsyncExploding()
    chain = Chain(Decoder(), [stage], chunk=4)
    assert chain.is_async
    out = await chain.run_async(records, failures := [])
    assert [(e.body["n"], e.body["seen"]) for e in out] == [(0, True), (1, True), (2, True), (4, True), (5, True)]
    assert [(f.record.offset, f.stage, f.error) for f in failures] == [(3, "enrich", "ProcessorError"),
                                                                      (6, "decode", "invalid_json")]
    assert "missing reference" in failures[0].message


async def test_chain_runs_sync_and_lookup_stages_in_order(service):
    lookup = http_lookup("profile", service.url, "user_id", into="profile")

    class Upper:
        def process(self, events, failures):
            for e in events:
                e.body["tier"] = e.body.get("profile", {}).get("tier", "").upper()
            return events

    chain = Chain(Decoder(), [lookup, Upper()], chunk=2)
    try:
        out = await chain.run_async([record("in", {"user_id": u}, offset=i) for i, u in enumerate(["u1", "u2", "x"])], [])
        assert [e.body["tier"] for e in out] == ["GOLD", "FREE", ""]
    finally:
        await lookup.close()


def test_chain_run_refuses_an_async_only_stage():
    chain = Chain(Decoder(), [http_lookup("profile", "http://h/{key}", "user_id")])
    with pytest.raises(TypeError, match="'profile' .*async-only.*run_async"):
        chain.run([record("in", {"user_id": "u1"})], [])
    assert not Chain(Decoder(), []).is_async


async def test_pipeline_run_async_routes_looked_up_events_and_leaves_other_topics_as_run_does(service):
    router = Router([Route("gold", (RouteTarget("gold/out"),), {"detail": {"profile": {"tier": ["gold"]}}}),
                     Route("all", (RouteTarget("all/out"),))])
    lookup = http_lookup("profile", service.url, "detail.user_id", fields=["tier"], on_missing="dead-letter")
    pipeline = Pipeline({"clicks": [lookup]}, router)
    batch = {"clicks": [record("clicks", {"detail": {"user_id": u}}, offset=i) for i, u in enumerate(["u1", "u2", "zz", "u1"])],
             "raw": [record("raw", {"detail": {}}, offset=0)]}
    assert pipeline.is_async
    with pytest.raises(TypeError, match="async-only"):
        pipeline.run(batch)
    try:
        result = await pipeline.run_async(batch)
    finally:
        await lookup.close()
    by_target = {}
    for d in result.deliveries:
        body = orjson.loads(d.payload)
        by_target.setdefault(d.target, []).append((d.record.topic, d.record.offset, body["detail"].get("profile")))
    assert by_target == {
        "gold/out": [("clicks", 0, {"tier": "gold"}), ("clicks", 3, {"tier": "gold"})],
        "all/out": [("clicks", 0, {"tier": "gold"}), ("clicks", 1, {"tier": "free"}), ("clicks", 3, {"tier": "gold"}),
                    ("raw", 0, None)],
    }
    assert [(f.record.offset, f.error) for f in result.failures] == [(2, "lookup_missing")]
    assert result.consumed == 5 and result.matched == {"gold": 2, "all": 4}
    assert not Pipeline({"raw": []}, router).is_async


def test_a_lookup_without_a_fetcher_says_what_to_pass():
    # processors do no I/O of their own: the GET is injected (the worker wires aiohttp's)
    from processors.enrich import HttpLookup

    with pytest.raises(ValueError, match="expected `fetch` or `make_fetcher`"):
        HttpLookup("profile", "http://profiles.local/{key}", "detail.user_id")


async def test_an_injected_fetch_and_observer_see_every_request():
    from processors.enrich import HttpLookup

    seen, reports = [], []

    async def fetch(url):
        seen.append(url)
        return (200, {"tier": "gold"}) if url.endswith("u1") else (404, None)

    class Observer:
        def counted(self, hits, misses, errors):
            reports.append((hits, misses, errors))

        def request_took(self, seconds):
            reports.append("took")

    lookup = HttpLookup("p", "http://profiles.local/{key}", "detail.user_id", fetch=fetch, observer=Observer())
    out = await lookup.process_async(events("u1", "u2", "u1"), [])
    assert seen == ["http://profiles.local/u1", "http://profiles.local/u2"]
    assert [e.body["detail"].get("p") for e in out] == [{"tier": "gold"}, None, {"tier": "gold"}]
    assert reports.count("took") == 2 and reports[-1] == (0, 3, 0)  # not cached when the batch began
