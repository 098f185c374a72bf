"""Realistic synthetic traffic for the demo and the benchmarks: IoT telemetry, web clickstream and
Debezium (Postgres) change events, shaped like the samples in tests/data, seeded so runs repeat.
"""
from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime

import orjson

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",  # noqa: E501
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
PAGES = [("/", "Home"), ("/products/42", "Trail Shoe 42"), ("/products/7", "Rain Jacket"), ("/cart", "Cart"),
         ("/search", "Search"), ("/checkout", "Checkout")]
THING_TYPES = ["EnvSensorV2", "PumpController", "ColdChainTracker"]
ORDER_STATUS = ["created", "paid", "packed", "shipped", "delivered"]


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


class TrafficGenerator:
    def __init__(self, seed: int = 7, devices: int = 200, users: int = 500):
        self.rng = random.Random(seed)
        self.devices = [f"sensor-{i:04d}" for i in range(devices)]
        self.device_seq = {d: 0 for d in self.devices}
        self.users = [f"user-{1000 + i}" for i in range(users)]
        self.orders: dict[int, dict] = {}
        self.next_order = 5000
        self.lsn = 24_000_000
        self.tx = 700

    def iot(self, now_ms: int | None = None) -> tuple[bytes, bytes]:
        rng = self.rng
        now_ms = now_ms or int(time.time() * 1000)
        device = rng.choice(self.devices)
        self.device_seq[device] += 1
        temperature = round(rng.gauss(24, 6), 2)
        body = {
            "message_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "device_id": device,
            "thing_name": f"site-{int(device[-4:]) % 12}-{device}",
            "thing_type": THING_TYPES[int(device[-4:]) % len(THING_TYPES)],
            "timestamp": now_ms,
            "seq": self.device_seq[device],
            "measurements": {
                "temperature": {"value": temperature, "unit": "C"},
                "humidity": round(min(100.0, max(0.0, rng.gauss(55, 12))), 1),
                "battery": rng.randint(5, 100),
            },
            "location": {"lat": round(52.37 + rng.uniform(-0.2, 0.2), 5), "lon": round(4.89 + rng.uniform(-0.2, 0.2), 5)},
            "firmware": "2.4.1",
        }
        return device.encode(), orjson.dumps(body)

    def click(self, now_ms: int | None = None) -> tuple[bytes, bytes]:
        rng = self.rng
        now_ms = now_ms or int(time.time() * 1000)
        user = rng.choice(self.users)
        path, title = rng.choice(PAGES)
        name = rng.choices(["page_view", "search", "add_to_cart", "purchase"], [70, 12, 12, 6])[0]
        properties: dict = {}
        if name in ("add_to_cart", "purchase"):
            properties = {"product_id": path.rsplit("/", 1)[-1] if "products" in path else "42",
                          "price": round(rng.uniform(9, 190), 2), "currency": "EUR", "quantity": rng.randint(1, 3)}
        elif name == "search":
            properties = {"query": rng.choice(["shoes", "jacket", "socks", "tent"])}
        body = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "event_name": name,
            "anonymous_id": f"anon-{hash(user) & 0xFFFFFF:06x}",
            "user_id": user if rng.random() < 0.6 else None,
            "platform": "web",
            "timestamp": iso_ms(now_ms),
            "page": {"url": f"https://shop.example.com{path}", "path": path, "title": title,
                     "referrer": rng.choice(["", "https://news.example.org/", "https://www.google.com/"])},
            "properties": properties,
            "user_agent": rng.choice(USER_AGENTS),
            "ip": f"203.0.113.{rng.randint(1, 254)}",
        }
        return user.encode(), orjson.dumps(body)

    def cdc(self, now_ms: int | None = None) -> list[tuple[bytes, bytes | None]]:
        """One change to inventory.orders (a delete is followed by its tombstone, as Debezium does)."""
        rng = self.rng
        now_ms = now_ms or int(time.time() * 1000)
        self.lsn += rng.randint(50, 400)
        self.tx += 1
        if not self.orders or rng.random() < 0.35:
            order_id, op, before = self.next_order, "c", None
            self.next_order += 1
            after = {"id": order_id, "customer_id": rng.randint(1000, 1499), "status": "created",
                     "total": round(rng.uniform(10, 400), 2), "updated_at": now_ms}
        else:
            order_id = rng.choice(list(self.orders))
            before = self.orders[order_id]
            stage = ORDER_STATUS.index(before["status"])
            if stage == len(ORDER_STATUS) - 1 or rng.random() < 0.05:
                op, after = "d", None
            else:
                op, after = "u", dict(before, status=ORDER_STATUS[stage + 1], updated_at=now_ms)
        if after is None:
            self.orders.pop(order_id, None)
        else:
            self.orders[order_id] = after
        key = orjson.dumps({"id": order_id})
        value = {
            "before": before, "after": after, "op": op, "ts_ms": now_ms + rng.randint(5, 80), "transaction": None,
            "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "dbserver1", "ts_ms": now_ms,
                       "snapshot": "false", "db": "shop", "schema": "inventory", "table": "orders",
                       "txId": self.tx, "lsn": self.lsn, "xmin": None},
        }
        out: list[tuple[bytes, bytes | None]] = [(key, orjson.dumps(value))]
        if op == "d":
            out.append((key, None))
        return out

    def malformed(self) -> bytes:
        return self.rng.choice([b'{"device_id": "sensor-0001", "timestamp": ', b"\xff\xfe\x00garbage", b"[1, 2, 3]",
                                b'{"device_id": "sensor-0002", "measurements": {}}'])
