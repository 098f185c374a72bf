"""The `log` target: one line per event on the worker's log, for debugging a rule."""
from __future__ import annotations

import logging

from streams.targets.base import Item, Target

log = logging.getLogger("eventweir.target")


class LogTarget(Target):
    kind = "log"

    def write(self, items: list[Item]) -> None:
        for delivery, _ in items:
            payload = delivery.payload
            log.info("%s %s", self.id, payload.decode(errors="replace") if isinstance(payload, bytes) else payload)
        self.settle(items)
