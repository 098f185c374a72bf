"""Chain: sub-batching must not change what comes out, only how fast."""
from __future__ import annotations

import pytest

from processors.chain import Chain
from processors.decode import Decoder
from processors.enrich import Sessioniser
from processors.normalise import ClickstreamNormaliser
from tests.samples import record


def _records():
    docs = [{"event_id": f"e{i}", "event_name": "page_view", "anonymous_id": f"a{i % 7}", "platform": "web",
             "timestamp": f"2024-11-25T10:{i // 60:02d}:{i % 60:02d}Z"} for i in range(300)]
    return [record("clicks", d, offset=i) for i, d in enumerate(docs)] + [record("clicks", b"{bad", offset=300)]


@pytest.mark.parametrize("chunk", [1, 7, 128, 1000])
def test_chunking_gives_the_same_events_and_failures(chunk):
    whole_failures, chunk_failures = [], []
    whole = Chain(Decoder(), [ClickstreamNormaliser(), Sessioniser()], chunk=10_000).run(_records(), whole_failures)
    parts = Chain(Decoder(), [ClickstreamNormaliser(), Sessioniser()], chunk=chunk).run(_records(), chunk_failures)
    assert [e.body for e in parts] == [e.body for e in whole]
    assert [(f.record.offset, f.error) for f in chunk_failures] == [(300, "invalid_json")]
    assert len(whole_failures) == 1


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Chain(Decoder(), [], chunk=0)


async def test_run_async_matches_run():
    failures_a, failures_b = [], []
    a = Chain(Decoder(), [ClickstreamNormaliser(), Sessioniser()], chunk=16).run(_records(), failures_a)
    b = await Chain(Decoder(), [ClickstreamNormaliser(), Sessioniser()], chunk=16).run_async(_records(), failures_b)
    assert [e.body for e in a] == [e.body for e in b] and len(failures_a) == len(failures_b) == 1
