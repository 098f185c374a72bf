"""`mount_demo_api`: the credentials it returns sign requests (with botocore's signer, as boto3 does) that the API accepts."""
from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from streams.config import parse_config
from streams.http.app import make_app
from streams.http.eventbridge.api import mount_demo_api
from streams.runtime.worker import Worker


def signed_headers(url: str, body: bytes, key: str, secret: str, region: str = "local") -> dict:
    request = AWSRequest(method="POST", url=url, data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEvents.ListRules"})
    SigV4Auth(Credentials(key, secret), "events", region).add_auth(request)
    return dict(request.prepare().headers)


async def test_demo_credentials_sign_requests_the_api_accepts():
    config = parse_config({"sources": [{"topic": "in"}],
                           "rules": [{"name": "r1", "EventPattern": {"source": ["a"]}}]}, environ={})
    worker = Worker(config)
    app = make_app(worker)
    key, secret = mount_demo_api(app, worker)
    assert key.startswith("AKIA") and len(key) == 20 and len(secret) == 40
    async with TestClient(TestServer(app)) as client:
        url = str(client.make_url("/"))
        body = b"{}"
        resp = await client.post("/", data=body, headers=signed_headers(url, body, key, secret))
        assert resp.status == 200
        assert [r["Name"] for r in (await resp.json(content_type=None))["Rules"]] == ["r1"]
        resp = await client.post("/", data=body, headers=signed_headers(url, body, key, "not-" + secret[4:]))
        assert resp.status == 403
        assert (await resp.json(content_type=None))["__type"] == "InvalidSignatureException"
        # signed for a region this bus is not in (the demo prints AWS_DEFAULT_REGION=local)
        resp = await client.post("/", data=body, headers=signed_headers(url, body, key, secret, "eu-west-1"))
        assert resp.status == 403 and "valid region" in (await resp.json(content_type=None))["message"]
