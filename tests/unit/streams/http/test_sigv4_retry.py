"""SigV4 verification against botocore's own signer; the retry policy's arithmetic; rule config errors."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from streams.config import ConfigError, parse_config
from streams.http.eventbridge.sigv4 import SignatureError, verify
from streams.targets.retry import RetryPolicy

KEYS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def signed(body: bytes, key="AKIDEXAMPLE", secret=KEYS["AKIDEXAMPLE"], url="http://127.0.0.1:8080/",
           service="events", region="us-east-1", extra=None):
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.ListRules", **(extra or {})})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    prepared = request.prepare()
    headers = CIMultiDict(prepared.headers)
    headers["Host"] = "127.0.0.1:8080"
    return headers


def raw_path(url: str) -> str:
    """The path and query as the server receives them (aiohttp's request.raw_path)."""
    prepared = AWSRequest(method="POST", url=url, data=b"").prepare()
    parts = prepared.url.split("://", 1)[1].split("/", 1)
    return "/" + parts[1] if len(parts) > 1 else "/"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/", "http://127.0.0.1:8080/?b=2&a=1", "http://127.0.0.1:8080/?Z=1&a=2&a=1",
    "http://127.0.0.1:8080/a path/x", "http://127.0.0.1:8080/?q=a b&r=%2F", "http://127.0.0.1:8080/events/",
    "http://127.0.0.1:8080/x/../y", "http://127.0.0.1:8080/?empty=&flag", "http://127.0.0.1:8080/~user/%7E",
])
def test_every_shape_botocore_signs_verifies(url):
    # issue 21 item 14: odd query-key order and a space in the path used to fail
    body = b'{"NamePrefix": "a"}'
    assert verify("POST", raw_path(url), signed(body, url=url), body, KEYS) == "AKIDEXAMPLE"


@pytest.mark.parametrize("make, message", [
    (lambda b: signed(b, service="s3"), "scoped to correct service: 'events'"),
    (lambda b: signed(b, region="xx-nowhere-9"), "scoped to a valid region"),
    (lambda b: signed(b, extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}), "does not match X-Amz-Content-SHA256"),
])
def test_scope_and_payload_are_checked(make, message):
    body = b"{}"
    with pytest.raises(SignatureError, match=message):
        verify("POST", "/", make(body), body, KEYS, regions={"us-east-1", "local"})


def test_an_unsigned_target_header_is_refused():
    body = b"{}"
    headers = signed(body)
    auth = headers["Authorization"].replace(";x-amz-target", "")
    headers["Authorization"] = auth
    with pytest.raises(SignatureError, match="X-Amz-Target header must be signed"):
        verify("POST", "/", headers, body, KEYS)


def test_a_botocore_signature_verifies_and_names_the_key():
    body = b'{"NamePrefix": "a"}'
    assert verify("POST", "/", signed(body), body, KEYS) == "AKIDEXAMPLE"


@pytest.mark.parametrize("tamper, code", [
    (lambda h, b: (h, b + b" "), "InvalidSignatureException"),  # body changed after signing
    (lambda h, b: (h.__setitem__("X-Amz-Target", "AWSEvents.DeleteRule") or h, b), "InvalidSignatureException"),
    (lambda h, b: (h.__delitem__("Authorization") or h, b), "IncompleteSignature"),
])
def test_tampered_or_unsigned_requests_are_refused(tamper, code):
    body = b'{"NamePrefix": "a"}'
    headers, body2 = tamper(signed(body), body)
    with pytest.raises(SignatureError) as err:
        verify("POST", "/", headers, body2, KEYS)
    assert err.value.code == code


def test_unknown_key_and_wrong_secret_and_old_requests_are_refused():
    body = b"{}"
    with pytest.raises(SignatureError, match="security token"):
        verify("POST", "/", signed(body, key="AKIDOTHER"), body, KEYS)
    with pytest.raises(SignatureError, match="does not match"):
        verify("POST", "/", signed(body, secret="not-the-secret"), body, KEYS)
    with pytest.raises(SignatureError, match="expired"):
        verify("POST", "/", signed(body), body, KEYS, now=datetime.now(UTC) + timedelta(minutes=20))


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_retry_attempts=5, max_event_age_s=60, base_delay_s=1.0, max_delay_s=8.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.delay(n, rand=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_retry_policy_runs_out_of_attempts_or_event_age():
    policy = RetryPolicy(max_retry_attempts=2, max_event_age_s=60)
    assert policy.exhausted(1, first_seen=100.0, now=101.0) is None
    assert policy.exhausted(2, first_seen=100.0, now=101.0) is None
    assert policy.exhausted(3, first_seen=100.0, now=101.0) == "MaximumRetryAttempts"
    assert policy.exhausted(1, first_seen=100.0, now=160.0) == "MaximumEventAgeInSeconds"


def _config(targets, **extra):
    """The config, with every target's own keys checked too, as `eventweir run` checks them."""
    from streams.targets import check_targets

    config = parse_config({"sources": [{"topic": "in"}], "rules": [{"name": "r", "targets": targets}], **extra},
                          environ={})
    check_targets(config)
    return config


def test_rule_and_target_settings_errors_name_the_key_path():
    too_many = r"^rules\[0\].targets: at most 5 targets per rule \(routing.max_targets_per_rule\), got 6"
    with pytest.raises(ConfigError, match=too_many):
        _config([{"id": f"t{i}", "type": "log"} for i in range(6)])
    assert len(_config([{"id": f"t{i}", "type": "log"} for i in range(6)],
                       routing={"max_targets_per_rule": 6}).rules[0].targets) == 6
    with pytest.raises(ConfigError, match=r"rules\[0\].targets\[0\].RetryPolicy.MaximumRetryAttempts: .*185"):
        _config([{"id": "h", "type": "http", "url": "http://x", "RetryPolicy": {"MaximumRetryAttempts": 186}}])
    with pytest.raises(ConfigError, match=r"MaximumEventAgeInSeconds: .*60"):
        _config([{"id": "h", "type": "http", "url": "http://x", "RetryPolicy": {"MaximumEventAgeInSeconds": 59}}])
    with pytest.raises(ConfigError, match="an http target needs `url`"):
        _config([{"id": "h", "type": "http"}])
    with pytest.raises(ConfigError, match="Only one of Input, InputPath, or InputTransformer must be provided for target l."):
        _config([{"id": "l", "type": "log", "Input": "{}", "InputPath": "$.detail"}])
    with pytest.raises(ConfigError, match=r"rules\[r\].targets\[h\].auth: auth type 'bearer' needs token"):
        _config([{"id": "h", "type": "http", "url": "http://x", "auth": {"type": "bearer"}}])
