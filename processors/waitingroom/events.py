"""Room events as EventBridge envelopes, so bus rules can route them like any other event."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

SOURCE = "eventweir.waitingroom"
JOINED = "Queue Joined"
ADMITTED = "Queue Admitted"
TOKEN_ISSUED = "Access Token Issued"
SESSION_UPDATED = "Session Updated"
EXPIRED = "Queue Position Expired"
SESSION_EXPIRED = "Session Expired"
METRICS = "Room Metrics"


def room_event(detail_type: str, room: str, detail: dict[str, Any], now_s: float,
               account: str = "000000000000", region: str = "local") -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": SOURCE,
        "account": account,
        "time": datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"eventweir:waitingroom:{room}"],
        "detail": {"room": room, **detail},
    }
