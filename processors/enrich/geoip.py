"""IP -> region from a configured CIDR table, and IP truncation for privacy.

The table is a list of (cidr, region-dict or name) rows, e.g. from a CSV of a company's
network plan or a GeoIP country export. A lookup tries one dict per prefix length present,
longest first, so for nested CIDRs the most specific wins.
Truncation zeroes the host part (IPv4 /24, IPv6 /48 by default), the way Google Analytics
anonymises addresses, and runs after the region lookup so the region still comes from the
full address.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from pydantic import BaseModel, ConfigDict

from processors.core import Event, Failure
from processors.paths import get_path, split_path


def parse_ip(ip: str) -> tuple[int, int] | None:
    """(version, address as int) via the C parser; None for anything that is not an IP address."""
    try:
        return 4, int.from_bytes(inet_pton(AF_INET, ip), "big")
    except OSError:
        pass
    try:
        return 6, int.from_bytes(inet_pton(AF_INET6, ip), "big")
    except OSError:
        return None


class CidrTable:
    def __init__(self, rows: Iterable[tuple[str, dict | str]]):
        # per IP version: prefix length -> {network number >> host bits: value}; longest prefix first
        nets: dict[int, dict[int, dict[int, dict]]] = {4: {}, 6: {}}
        for cidr, region in rows:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"CIDR table row {cidr!r}: expected a network like '203.0.113.0/24' ({exc})") from None
            value = region if isinstance(region, dict) else {"region": region}
            host_bits = net.max_prefixlen - net.prefixlen
            nets[net.version].setdefault(host_bits, {})[int(net.network_address) >> host_bits] = value
        self._nets = {v: sorted(by_bits.items()) for v, by_bits in nets.items()}

    def lookup(self, ip: str) -> dict | None:
        """The most specific network containing `ip`, or None (also for text that is not an IP)."""
        parsed = parse_ip(ip)
        return None if parsed is None else self.lookup_int(*parsed)

    def lookup_int(self, version: int, n: int) -> dict | None:
        for host_bits, networks in self._nets[version]:
            value = networks.get(n >> host_bits)
            if value is not None:
                return value
        return None


def truncate_ip(ip: str, v4_prefix: int = 24, v6_prefix: int = 48) -> str | None:
    parsed = parse_ip(ip)
    return None if parsed is None else truncate_int(*parsed, v4_prefix, v6_prefix)


def truncate_int(version: int, n: int, v4_prefix: int = 24, v6_prefix: int = 48) -> str:
    if version == 4:
        return inet_ntop(AF_INET, (n >> (32 - v4_prefix) << (32 - v4_prefix)).to_bytes(4, "big"))
    return inet_ntop(AF_INET6, (n >> (128 - v6_prefix) << (128 - v6_prefix)).to_bytes(16, "big"))


class IpSettings(BaseModel):
    """`cidrs`: {CIDR: region name or object}; the rest as IpEnricher takes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cidrs: dict[str, str | dict] | None = None
    field: str = "detail.ip"
    into: str = "detail.geo"
    truncate: bool = False
    v4_prefix: int = 24
    v6_prefix: int = 48


class IpEnricher:
    """Sets `detail.geo` from the CIDR table (when given) and truncates `detail.ip` (when asked)."""

    stage = "enrich"
    Settings = IpSettings

    @classmethod
    def from_settings(cls, settings: IpSettings, context) -> IpEnricher:
        table = CidrTable(settings.cidrs.items()) if settings.cidrs else None
        return cls(table, field=settings.field, into=settings.into, truncate=settings.truncate,
                   v4_prefix=settings.v4_prefix, v6_prefix=settings.v6_prefix)

    def __init__(self, table: CidrTable | None = None, field: str = "detail.ip", into: str = "detail.geo",
                 truncate: bool = False, v4_prefix: int = 24, v6_prefix: int = 48):
        if table is None and not truncate:
            raise ValueError("IpEnricher: give a CIDR table, truncate=True, or both")
        if not (0 <= v4_prefix <= 32 and 0 <= v6_prefix <= 128):
            raise ValueError(f"IpEnricher prefixes {v4_prefix}/{v6_prefix}: expected 0-32 for IPv4, 0-128 for IPv6")
        self.table, self.truncate = table, truncate
        self._field = split_path(field)
        target = split_path(into)
        self._parent, self._leaf = target[:-1], target[-1]
        self.v4_prefix, self.v6_prefix = v4_prefix, v6_prefix
        # a visitor's events come from one address: remember (region, truncated) per address
        self._cache: dict[str, tuple[dict | None, str | None]] = {}

    def _resolve(self, ip: str) -> tuple[dict | None, str | None]:
        parsed = parse_ip(ip)
        result: tuple[dict | None, str | None]
        if parsed is None:  # not an address: no region, and it is removed rather than passed on
            result = (None, None)
        else:
            result = (self.table.lookup_int(*parsed) if self.table is not None else None,
                      truncate_int(*parsed, self.v4_prefix, self.v6_prefix))
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[ip] = result
        return result

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        has_table, truncate, cache = self.table is not None, self.truncate, self._cache
        holder_path, leaf = self._field[:-1], self._field[-1]
        single = len(holder_path) == 1
        for event in events:
            if single:  # the usual "detail.ip"
                holder = event.body.get(holder_path[0])
            else:
                holder = get_path(event.body, holder_path) if holder_path else event.body
            if type(holder) is not dict:
                continue
            ip = holder.get(leaf)
            if type(ip) is not str:
                continue
            resolved = cache.get(ip) or self._resolve(ip)
            if has_table:
                parent = event.body
                for step in self._parent:
                    parent = parent.setdefault(step, {})
                parent[self._leaf] = resolved[0]
            if truncate:
                holder[leaf] = resolved[1]
        return events
