"""The stream side: a batch of join / complete / abandon events from Kafka -> store calls -> Deliveries.

Input event bodies (already decoded JSON):
  {"action": "join", "room": "sale", "request_id": "r-1", "claim"?: "<signed site claim>"}
  {"action": "complete" | "abandon", "room": "sale", "request_id": "r-1"}
An EventBridge envelope is accepted too: its `detail` carries the same fields.

Every valid event gets exactly one reply on `reply_target`, keyed by request id (a refused join —
closed, sold out — is a reply with an `error`, since the producer is waiting for it). A malformed
event becomes a Failure for the dead-letter topic. Joins are idempotent per request id, so a replayed
batch gets the same positions. Room events the service emitted (to an `EventOutbox`) go to `bus_target`.
"""
from __future__ import annotations

import asyncio
from typing import Any

import orjson

from processors.core import Delivery, Event, Failure

from .service import RoomError, WaitingRoomService

STAGE = "waitingroom"
_ACTIONS = {"join", "complete", "abandon"}


class EventOutbox:
    """Collects the service's room events (set `service.emit = outbox.append`) until the runtime drains them."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []

    def append(self, envelope: dict[str, Any]) -> None:
        self._events.append(envelope)

    def drain(self) -> list[dict[str, Any]]:
        out, self._events = self._events, []
        return out


def _request(body: dict[str, Any]) -> dict[str, Any]:
    if "detail" in body and "detail-type" in body and isinstance(body["detail"], dict):
        return body["detail"]
    return body


async def _one(service: WaitingRoomService, req: dict[str, Any]) -> dict[str, Any]:
    room, rid, action = req["room"], req["request_id"], req["action"]
    try:
        if action == "join":
            return await service.join(room, rid, req.get("claim"))
        status = "completed" if action == "complete" else "abandoned"
        return await service.update_session(room, rid, status)
    except RoomError as exc:
        return {"room": room, "request_id": rid, "error": exc.code, "message": exc.message, **exc.detail}


async def handle_waitingroom_batch(service: WaitingRoomService, events: list[Event], failures: list[Failure], *,
                                   reply_target: str, bus_target: str | None = None,
                                   outbox: EventOutbox | None = None) -> list[Delivery]:
    valid: list[tuple[Event, dict[str, Any]]] = []
    for ev in events:
        req = _request(ev.body) if isinstance(ev.body, dict) else None
        problem = None
        if req is None:
            problem = "expected a JSON object"
        elif req.get("action", "join") not in _ACTIONS:
            problem = f"action: expected one of {sorted(_ACTIONS)}, got {req.get('action')!r}"
        elif not isinstance(req.get("room"), str) or not req.get("room"):
            problem = "room: expected the waiting room id (a string)"
        elif not isinstance(req.get("request_id"), str) or not req.get("request_id"):
            problem = "request_id: expected a string (the reply is keyed by it)"
        if problem:
            failures.append(Failure(ev.record, STAGE, "invalid_request", problem))
            continue
        valid.append((ev, {**req, "action": req.get("action", "join")}))

    # all calls of the batch run concurrently, so the store sends them in one Redis pipeline
    results = await asyncio.gather(*(_one(service, req) for _, req in valid))
    out = [Delivery(target=reply_target, record=ev.record, payload=orjson.dumps(res), key=req["request_id"].encode())
           for (ev, req), res in zip(valid, results)]
    if outbox is not None and bus_target is not None and events:
        last = events[-1].record  # room events ride on the batch's last offset: committed once they are delivered
        out.extend(Delivery(target=bus_target, record=last, payload=orjson.dumps(env),
                            key=env["detail"]["room"].encode(), event=env) for env in outbox.drain())
    return out
