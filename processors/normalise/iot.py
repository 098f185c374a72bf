"""IoT telemetry -> envelope. `time` is the device's reading time; `id` its message_id if it sent one."""
from __future__ import annotations

from processors.core import Event, Failure, ProcessorError
from processors.normalise.envelope import derived_id, format_time, to_epoch_ms


class IotNormaliser:
    stage = "normalise"

    def __init__(self, source: str = "eventweir.iot", detail_type: str = "IoT Telemetry",
                 account: str = "000000000000", region: str = "local"):
        self.source, self.detail_type, self.account, self.region = source, detail_type, account, region
        self._arn_prefix = f"arn:aws:iot:{region}:{account}:thing/"

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out: list[Event] = []
        made: list[dict] = []  # events are changed only once every envelope is made (processors/stage.py)
        for event in events:
            body = event.body
            ms = body.get("timestamp")
            if type(ms) is not int:
                try:
                    ms = to_epoch_ms(ms)
                except ProcessorError as exc:
                    failures.append(Failure(event.record, self.stage, exc.error, exc.message))
                    continue
            thing = body.get("thing_name") or body.get("device_id")
            made.append({"version": "0", "id": body.get("message_id") or derived_id(event.record),
                         "detail-type": self.detail_type, "source": self.source, "account": self.account,
                         "time": format_time(ms), "region": self.region,
                         "resources": [self._arn_prefix + thing] if thing else [], "detail": body})
            out.append(event)
        for event, envelope in zip(out, made):
            event.body = envelope
        return out
