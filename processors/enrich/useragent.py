"""User-agent parsing into browser / os / device and a bot flag.

A compact rule set covering the browsers, systems and crawlers that make up real traffic, not
the full ua-parser catalogue: the order of the checks is what matters (Edge and Opera announce
themselves as Chrome, Chrome as Safari, every crawler as Mozilla). Results are cached per UA
string, since a site's traffic repeats a few thousand distinct strings.
"""
from __future__ import annotations

import re
from functools import lru_cache

from processors.core import Event, Failure
from processors.paths import get_path, split_path

_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|mediapartners|facebookexternalhit|headlesschrome|phantomjs|lighthouse|"
    r"python-requests|python-urllib|curl/|wget/|go-http-client|libwww|scrapy|java/|apache-httpclient|"
    r"pingdom|uptimerobot|monitor", re.I)
_BROWSERS = [  # (name, pattern with the version in group 1), first match wins
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/([\d.]+)")),
    ("Opera", re.compile(r"(?:OPR|Opera)/([\d.]+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/([\d.]+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/([\d.]+)")),
    ("Chrome", re.compile(r"(?:CriOS|Chrome)/([\d.]+)")),
    ("Safari", re.compile(r"Version/([\d.]+).*Safari/")),
    ("Internet Explorer", re.compile(r"(?:MSIE |Trident/.*rv:)([\d.]+)")),
]
_OSES = [
    ("iOS", re.compile(r"(?:iPhone|iPad|iPod).*? OS ([\d_]+)")),
    ("Android", re.compile(r"Android ?([\d.]*)")),
    ("Windows", re.compile(r"Windows NT ([\d.]+)")),
    ("ChromeOS", re.compile(r"CrOS \S+ ([\d.]+)")),
    ("macOS", re.compile(r"Mac OS X ?([\d_.]*)")),
    ("Linux", re.compile(r"Linux()")),
]
_WINDOWS = {"10.0": "10", "6.3": "8.1", "6.2": "8", "6.1": "7", "6.0": "Vista", "5.1": "XP"}


@lru_cache(maxsize=8192)
def parse_user_agent(ua: str) -> dict:
    """{'browser', 'browser_version', 'os', 'os_version', 'device', 'is_bot'}; 'Other' when unknown."""
    is_bot = bool(_BOT.search(ua)) if ua else False
    browser, browser_version = "Other", None
    for name, pattern in _BROWSERS:
        m = pattern.search(ua)
        if m:
            browser, browser_version = name, m.group(1)
            break
    os_name, os_version = "Other", None
    for name, pattern in _OSES:
        m = pattern.search(ua)
        if m:
            os_name, os_version = name, m.group(1).replace("_", ".") or None
            break
    if os_name == "Windows" and os_version:
        os_version = _WINDOWS.get(os_version, os_version)
    if is_bot:
        device = "bot"
    elif "iPad" in ua or "Tablet" in ua or (os_name == "Android" and "Mobile" not in ua):
        device = "tablet"
    elif "Mobile" in ua or "iPhone" in ua or os_name in ("Android", "iOS"):
        device = "mobile"
    elif os_name == "Other" and browser == "Other":
        device = "other"
    else:
        device = "desktop"
    return {"browser": browser, "browser_version": browser_version, "os": os_name, "os_version": os_version,
            "device": device, "is_bot": is_bot}


class UserAgentEnricher:
    """Adds `detail.ua` from `detail.user_agent`; with drop_bots=True bot traffic is dead-lettered as `bot`."""

    stage = "enrich"

    def __init__(self, field: str = "detail.user_agent", into: str = "detail.ua", drop_bots: bool = False):
        self._field = split_path(field)
        target = split_path(into)
        self._parent, self._leaf = target[:-1], target[-1]
        self.drop_bots = drop_bots

    def process(self, events: list[Event], failures: list[Failure]) -> list[Event]:
        out = []
        path = self._field
        two = len(path) == 2
        first, second = path[0], path[-1]
        for event in events:
            if two:
                holder = event.body.get(first)
                ua = holder.get(second) if type(holder) is dict else None
            else:
                ua = get_path(event.body, path)
            if type(ua) is not str:
                out.append(event)
                continue
            parsed = parse_user_agent(ua)
            if self.drop_bots and parsed["is_bot"]:
                failures.append(Failure(event.record, self.stage, "bot", f"user agent is a bot: {ua[:120]}"))
                continue
            parent = event.body
            for step in self._parent:
                parent = parent.setdefault(step, {})
            parent[self._leaf] = parsed  # shared cached dict: stages after this must not mutate it
            out.append(event)
        return out
