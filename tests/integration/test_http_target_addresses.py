"""http targets call public internet addresses only, unless routing.http_allow_networks lists more
(issue 21 item 15): a rule must not be a way into the cluster. Checked on the resolved address."""
from __future__ import annotations

import orjson
import pytest

from streams.config import ConfigError, parse_config
from streams.runtime.topology import build_targets
from streams.targets.http import AddressPolicy, HttpTarget, Settings
from tests.integration.http_endpoint import Endpoint
from tests.integration.sink_helpers import DeadLetterRecorder, deliveries


def config(url: str, allow: list[str] | None = None):
    return parse_config({"sources": [{"topic": "in"}], "routing": {"http_allow_networks": allow or []},
                         "rules": [{"name": "r", "targets": [{"id": "web", "type": "http", "url": url}]}]},
                        environ={})


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://169.254.169.254/latest",
                                 "http://[::1]/x", "http://0.0.0.0/x"])
def test_an_address_inside_is_refused_when_the_rules_are_built(url):
    with pytest.raises(ConfigError, match=r"rules\[r\]\.targets\[web\]: url: .* is not a public internet address; "
                                          r"list its network in routing\.http_allow_networks"):
        build_targets(config(url), producer=None, dead_letters=None)


def test_listed_networks_and_public_addresses_are_allowed():
    policy = AddressPolicy(("10.0.0.0/8",))
    assert policy.refusal("10.1.2.3") is None and policy.refusal("8.8.8.8") is None
    assert policy.refusal("192.168.1.1") is not None and policy.refusal("224.0.0.1") is not None
    assert set(build_targets(config("http://10.1.2.3/x", ["10.0.0.0/8"]), None, None)) == {"r/web"}


async def test_a_name_that_resolves_inside_is_dead_lettered_not_called():
    async with Endpoint() as hook:
        port = hook.url.rsplit(":", 1)[1].split("/", 1)[0]
        url = f"http://localhost:{port}/"
        for allow, expect_calls in (((), 0), (("127.0.0.0/8", "::1/128"), 1)):
            dead = DeadLetterRecorder()
            target = HttpTarget("r/web", Settings(url=url), 100, dead, AddressPolicy(allow))
            await target.start()
            items, ticket = deliveries("r/web", [{"n": len(hook.received)}])
            target.submit(items)
            ticket.release()
            assert await target.flush(10)
            await target.close()
            assert len(hook.received) == expect_calls
            if not expect_calls:
                assert [f.error for f in dead.failures] == ["AddressNotAllowed"]
                assert "localhost resolves to" in dead.failures[0].message
    assert orjson.loads(orjson.dumps(hook.received[0])) == {"n": 0}
