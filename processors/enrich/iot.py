"""IoT enrichment: unit normalisation, derived fields, per-device order checks, threshold alerts.

All of them work on envelope events whose detail is an `iot` telemetry payload.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from processors.core import Event, Failure, ProcessorError
from processors.enrich.state import PartitionedState
from processors.normalise.envelope import format_time, make_envelope, stable_id, to_epoch_ms

# unit -> (canonical unit, factor, offset): canonical = value * factor + offset (all are linear)
_F = 5.0 / 9.0
CONVERSIONS: dict[str, tuple[str, float, float]] = {
    "C": ("C", 1.0, 0.0), "°C": ("C", 1.0, 0.0), "celsius": ("C", 1.0, 0.0),
    "F": ("C", _F, -32.0 * _F), "°F": ("C", _F, -32.0 * _F), "fahrenheit": ("C", _F, -32.0 * _F),
    "K": ("C", 1.0, -273.15), "kelvin": ("C", 1.0, -273.15),
    "Pa": ("hPa", 0.01, 0.0), "hPa": ("hPa", 1.0, 0.0), "mbar": ("hPa", 1.0, 0.0), "kPa": ("hPa", 10.0, 0.0),
    "bar": ("hPa", 1000.0, 0.0), "psi": ("hPa", 68.9475729, 0.0),
    "m/s": ("m/s", 1.0, 0.0), "km/h": ("m/s", 1 / 3.6, 0.0), "mph": ("m/s", 0.44704, 0.0),
    "L/min": ("L/min", 1.0, 0.0), "m3/h": ("L/min", 1000.0 / 60.0, 0.0), "gal/min": ("L/min", 3.785411784, 0.0),
    "%": ("%", 1.0, 0.0),
}


class UnitNormaliser:
    """Rewrites `detail.measurements` to bare numbers in canonical units; `detail.units` says which.

    A bare number is taken to be in the canonical unit already (`default_units` names it per
    measurement, for the record). An unknown unit is a dead-letter (`unknown_unit`): a silently
    unconverted reading would poison every aggregate downstream.
    """

    stage = "enrich"

    def __init__(self, default_units: Mapping[str, str] | None = None,
                 conversions: Mapping[str, tuple[str, float, float]] | None = None):
        """`conversions`: extra units, unit -> (canonical unit, factor, offset)."""
        self.default_units = dict(default_units or {"temperature": "C", "humidity": "%", "pressure": "hPa"})
        self.conversions = {**CONVERSIONS, **(conversions or {})}

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out = []
        conv, defaults = self.conversions, self.default_units
        for event in events:
            detail = event.body["detail"]
            values, units = {}, {}
            try:
                for name, m in detail["measurements"].items():
                    if type(m) is dict:
                        unit = m["unit"]
                        rule = conv.get(unit)
                        if rule is None:
                            raise ProcessorError("unknown_unit", f"field 'measurements.{name}.unit': unknown unit "
                                                 f"{unit!r}; expected one of {', '.join(sorted(conv))}")
                        units[name] = rule[0]
                        values[name] = m["value"] * rule[1] + rule[2]
                    else:
                        values[name] = m
                        if name in defaults:
                            units[name] = defaults[name]
            except ProcessorError as exc:
                failures.append(Failure(event.record, self.stage, exc.error, exc.message))
                continue
            detail["measurements"] = values
            detail["units"] = units
            out.append(event)
        return out


def heat_index_c(temp_c: float, rh: float) -> float:
    """NOAA heat index (Rothfusz regression with Steadman's low-range formula and adjustments), in C."""
    t = temp_c * 9.0 / 5.0 + 32.0
    simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
    if (simple + t) / 2.0 < 80.0:
        hi = simple
    else:
        tr = t * rh  # the Rothfusz polynomial, factored to a third of the multiplications
        hi = (-42.379 + t * (2.04901523 - 6.83783e-3 * t) + rh * (10.14333127 - 5.481717e-2 * rh)
              + tr * (-0.22475541 + 1.22874e-3 * t + 8.5282e-4 * rh - 1.99e-6 * tr))
        if rh < 13.0 and 80.0 <= t <= 112.0:
            hi -= ((13.0 - rh) / 4.0) * ((17.0 - abs(t - 95.0)) / 17.0) ** 0.5
        elif rh > 85.0 and 80.0 <= t <= 87.0:
            hi += ((rh - 85.0) / 10.0) * ((87.0 - t) / 5.0)
    return round((hi - 32.0) * 5.0 / 9.0, 2)


def dew_point_c(temp_c: float, rh: float) -> float:
    """Magnus formula; rh in percent (clamped away from 0 so the log is defined)."""
    a, b = 17.62, 243.12
    gamma = math.log(max(rh, 0.01) / 100.0) + a * temp_c / (b + temp_c)
    return round(b * gamma / (a - gamma), 2)


class DerivedFields:
    """Adds `detail.derived.heat_index` (and `dew_point` when asked), in C, when temperature (C) and
    humidity (%) are present. Runs after UnitNormaliser so the inputs are in canonical units."""

    stage = "enrich"

    def __init__(self, temperature: str = "temperature", humidity: str = "humidity", dew_point: bool = False):
        self.temperature, self.humidity, self.dew_point = temperature, humidity, dew_point

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        temperature, humidity, dew = self.temperature, self.humidity, self.dew_point
        for event in events:
            detail = event.body["detail"]
            m = detail["measurements"]
            t, rh = m.get(temperature), m.get(humidity)
            if t is not None and rh is not None:
                derived = {"heat_index": heat_index_c(t, rh)}
                if dew:
                    derived["dew_point"] = dew_point_c(t, rh)
                detail["derived"] = derived
        return events


class DeviceOrderCheck:
    """Per device: duplicates (same device and timestamp) and out-of-order readings.

    State per partition: device -> [latest timestamp, recent timestamps (newest last, up to
    `window`)]. A duplicate is dead-lettered (`duplicate`, the default), dropped and counted, or
    flagged; an out-of-order reading is flagged (`detail.quality.out_of_order`, the default),
    passed, or dead-lettered.
    """

    stage = "enrich"

    def __init__(self, window: int = 32, on_duplicate: str = "dead-letter", on_out_of_order: str = "flag",
                 state: PartitionedState | None = None):
        for name, value, allowed in (("on_duplicate", on_duplicate, ("dead-letter", "drop", "flag")),
                                     ("on_out_of_order", on_out_of_order, ("flag", "pass", "dead-letter"))):
            if value not in allowed:
                raise ValueError(f"DeviceOrderCheck {name}={value!r}: expected one of {', '.join(allowed)}")
        self.window, self.on_duplicate, self.on_out_of_order = window, on_duplicate, on_out_of_order
        self.state = state or PartitionedState("devices")
        self.duplicates = self.out_of_order = 0

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out = []
        state, window = self.state, self.window
        current_p: int | None = None
        table: dict[str, Any] = {}
        dirty: dict[str, Any] = {}
        for event in events:
            detail = event.body["detail"]
            device = detail["device_id"]
            ts = detail["timestamp"]
            if type(ts) is not int:
                ts = to_epoch_ms(ts)
            p = event.record.partition
            if p != current_p:  # batches are mostly one partition: fetch its dicts once
                current_p = p
                table, dirty = state.tables(p)
            seen = table.get(device)
            if seen is None:
                table[device] = dirty[device] = [ts, [ts]]
                out.append(event)
                continue
            latest, recent = seen
            if ts <= latest:  # in-order readings (the common case) cannot repeat an older one: no scan
                if ts in recent:
                    self.duplicates += 1
                    if self.on_duplicate == "dead-letter":
                        failures.append(Failure(event.record, self.stage, "duplicate",
                                                f"device {device!r} already sent a reading at {format_time(ts)}"))
                    elif self.on_duplicate == "flag":
                        detail.setdefault("quality", {})["duplicate"] = True
                        out.append(event)
                    continue
                if ts < latest:
                    self.out_of_order += 1
                    if self.on_out_of_order == "dead-letter":
                        failures.append(Failure(event.record, self.stage, "out_of_order",
                                                f"device {device!r}: reading at {format_time(ts)} is older than "
                                                f"the latest {format_time(latest)}"))
                        continue
                    if self.on_out_of_order == "flag":
                        detail.setdefault("quality", {})["out_of_order"] = True
            recent.append(ts)  # in place: the state value is this same list, re-put to mark it dirty
            if len(recent) > window:
                del recent[0]
            if ts > latest:
                seen[0] = ts
            dirty[device] = seen
            out.append(event)
        return out


_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
        "!=": operator.ne}


class ThresholdAlerts:
    """Emits an `IoT Threshold Alert` event, after the reading, for each rule the reading breaks.

    rules: [{"name": "overheat", "measurement": "temperature", "op": ">", "value": 40,
    "severity": "high"}]. Alert ids derive from the reading's id and the rule, so a replay
    produces the same alert ids (downstream can deduplicate).
    """

    stage = "enrich"

    def __init__(self, rules: Sequence[Mapping[str, Any]], detail_type: str = "IoT Threshold Alert"):
        self.rules = []
        for i, rule in enumerate(rules):
            missing = [k for k in ("measurement", "op", "value") if k not in rule]
            if missing or rule.get("op") not in _OPS:
                raise ValueError(f"alert rule {i} ({rule!r}): expected measurement, value and op in "
                                 f"{', '.join(_OPS)}")
            self.rules.append((rule.get("name") or f"{rule['measurement']} {rule['op']} {rule['value']}",
                               rule["measurement"], _OPS[rule["op"]], rule["op"], rule["value"],
                               rule.get("severity", "warning")))
        self.detail_type = detail_type

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out = []
        for event in events:
            out.append(event)
            body = event.body
            m = body["detail"]["measurements"]
            for name, measurement, test, op, limit, severity in self.rules:
                value = m.get(measurement)
                if type(value) in (int, float) and test(value, limit):
                    out.append(Event(event.record, make_envelope(
                        stable_id("alert", body["id"], name), self.detail_type, body["source"], body["account"],
                        body["time"], body["region"], body["resources"],
                        {"alert": name, "severity": severity, "device_id": body["detail"]["device_id"],
                         "measurement": measurement, "value": value, "op": op, "threshold": limit,
                         "unit": body["detail"].get("units", {}).get(measurement), "reading_id": body["id"]})))
        return out
