"""The `log` target: one line per event on the worker's log, for debugging a rule."""
from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict

from streams.targets.base import Item, Target

log = logging.getLogger("eventweir.target")


class LogTarget(Target):
    kind = "log"

    def write(self, items: list[Item]) -> None:
        for delivery, _ in items:
            payload = delivery.payload
            log.info("%s %s", self.id, payload.decode(errors="replace") if isinstance(payload, bytes) else payload)
        self.settle(items)


class Settings(BaseModel):
    """A log target has no keys of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def build(context, name: str, settings: Settings) -> LogTarget:
    return LogTarget(name, context.max_in_flight, context.dead_letters)
