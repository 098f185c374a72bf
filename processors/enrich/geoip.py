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
from functools import lru_cache

from processors.core import Event, Failure
from processors.normalise.envelope import get_path, split_path


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
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        n = int(addr)
        for host_bits, networks in self._nets[addr.version]:
            value = networks.get(n >> host_bits)
            if value is not None:
                return value
        return None


@lru_cache(maxsize=65536)
def truncate_ip(ip: str, v4_prefix: int = 24, v6_prefix: int = 48) -> str | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = v4_prefix if addr.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


class IpEnricher:
    """Sets `detail.geo` from the CIDR table (when given) and truncates `detail.ip` (when asked)."""

    stage = "enrich"

    def __init__(self, table: CidrTable | None = None, field: str = "detail.ip", into: str = "detail.geo",
                 truncate: bool = False, v4_prefix: int = 24, v6_prefix: int = 48):
        if table is None and not truncate:
            raise ValueError("IpEnricher: give a CIDR table, truncate=True, or both")
        self.table, self.truncate = table, truncate
        self._field = split_path(field)
        target = split_path(into)
        self._parent, self._leaf = target[:-1], target[-1]
        self.v4_prefix, self.v6_prefix = v4_prefix, v6_prefix
        self._cache: dict[str, dict | None] = {}

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        for event in events:
            ip = get_path(event.body, self._field)
            if type(ip) is not str:
                continue
            if self.table is not None:
                geo = self._cache.get(ip, False)
                if geo is False:
                    if len(self._cache) > 100_000:
                        self._cache.clear()
                    geo = self._cache[ip] = self.table.lookup(ip)
                parent = event.body
                for step in self._parent:
                    parent = parent.setdefault(step, {})
                parent[self._leaf] = geo
            if self.truncate:
                holder = get_path(event.body, self._field[:-1]) if len(self._field) > 1 else event.body
                holder[self._field[-1]] = truncate_ip(ip, self.v4_prefix, self.v6_prefix)
        return events
