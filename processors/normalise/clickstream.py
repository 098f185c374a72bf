"""Clickstream -> envelope. `time` is when it happened on the client; `id` the SDK's event_id.

With `detail_type_from_event=True` the detail-type is the event name ("page_view"), so rules
can match on it directly; otherwise every event gets the configured detail-type.
"""
from __future__ import annotations

from processors.core import Event, Failure, ProcessorError
from processors.normalise.envelope import derived_id, envelope_time


class ClickstreamNormaliser:
    stage = "normalise"

    def __init__(self, source: str = "eventweir.clickstream", detail_type: str = "Clickstream Event",
                 account: str = "000000000000", region: str = "local", detail_type_from_event: bool = False):
        self.source, self.detail_type, self.account, self.region = source, detail_type, account, region
        self.detail_type_from_event = detail_type_from_event

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        made: list[dict] = []  # events are changed only once every envelope is made (processors/stage.py)
        for event in events:
            body = event.body
            try:
                time = envelope_time(body.get("timestamp"))
            except ProcessorError as exc:
                failures.append(Failure(event.record, self.stage, exc.error, exc.message))
                continue
            detail_type = (body.get("event_name") or self.detail_type) if self.detail_type_from_event \
                else self.detail_type
            made.append({"version": "0", "id": body.get("event_id") or derived_id(event.record),
                         "detail-type": detail_type, "source": self.source, "account": self.account,
                         "time": time, "region": self.region, "resources": [], "detail": body})
            out.append(event)
        for event, envelope in zip(out, made):
            event.body = envelope
        return out
