"""Room settings: parsed and validated once, so a bad value is reported with its path and what was expected.

A room is configured by a plain dict (from the config file or the admin API):

    {"queueing_method": "fifo" | "random" | "passthrough" | "reject",
     "inlet": {"policy": "fixed_rate", "rate": 100, "interval_s": 60,        # N per interval,
               "max_active": 500}                                          # and optionally <= M sessions
            | {"policy": "max_active", "max_active": 500}                     # keep <= M sessions
            | {"policy": "manual"},                                           # admin API only
     "priority_classes": ["vip", "general"],   # highest first; the last one is the default
     "inventory": 1000 | null,                 # total admissions ever, then sold out
     "heartbeat_s": 300,                       # waiter that stops polling this long loses its place
     "session_duration_s": 600,                # access token lifetime / admitted session length
     "max_session_s": 3600 | null,             # renew an active visitor's session while they browse, up to
                                               # this long from the token's issue (null: no renewal)
     "rejoin_grace_s": 0,                      # a waiter who expired and comes back within this gets the old
                                               # place; later (or 0), a new one at the back
     "claim_timeout_s": 120 | null,            # an admitted visitor who takes no token this long frees the slot
                                               # (null: session_duration_s)
     "refresh_interval_s": 5,                  # how often the page polls
     "schedule": {"start": <epoch s | ISO-8601>, "end": ...},
     "paused": false,
     "claim_secret": "<shared HS256 secret of the protected site, >= 32 chars>" | null,
     "origins": ["https://shop.example.com"],  # the protected site(s): hand-off targets; the first is the default
     "cookie_domain": "example.com" | null,    # Domain of the access cookie; null: the host that served the room
     "cookie_secure": true,                    # false only for plain-http local testing
     "client_request_ids": false,              # true: the JSON API's join may name its own request id (retries)
     "display_name": "Summer sale" | null,     # the page's title for visitors (default: the room id)
     "language": "de" | null,                  # force the page's language (default: from Accept-Language)
     "page_template": "<!doctype html>..." | null,  # a Jinja2 template for the page (see the README)
     "bot_protection": {"altcha": {"max_number": 100000, "expires_s": 300}} | false}
                                               # a public join (no site claim, no place held) first solves an ALTCHA
                                               # proof-of-work challenge; on unless false. max_number: its cost
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

QUEUEING_METHODS = ("fifo", "random", "passthrough", "reject")
INLET_POLICIES = ("fixed_rate", "max_active", "manual")
_ROOM_KEYS = {
    "queueing_method", "inlet", "priority_classes", "inventory", "heartbeat_s",
    "session_duration_s", "refresh_interval_s", "schedule", "paused", "claim_secret",
    "origins", "cookie_domain", "cookie_secure", "client_request_ids", "claim_timeout_s",
    "rejoin_grace_s", "display_name", "language", "page_template", "max_session_s", "bot_protection",
}
# Every room setting, documented: (type, default, what it does). The configuration reference (deploy/README.md,
# streams/devtools/reference.py) is generated from it and tests/unit/processors/waitingroom/test_settings.py
# checks that it names every key parse_room_settings takes, so a new setting cannot go undocumented.
ROOM_SETTINGS: dict[str, tuple[str, str, str]] = {
    "queueing_method": ("one of `fifo`, `random`, `passthrough`, `reject`", "`fifo`",
                        "fifo: in order of joining; random: those who joined before schedule.start are shuffled at "
                        "the start (needs schedule.start); passthrough: everyone is let in at once (a room kept ready); "
                        "reject: nobody is let in (the room says it is closed)."),
    "inlet": ("section", "", "How many waiters are admitted, checked every tick_interval_s."),
    "inlet.policy": ("one of `fixed_rate`, `max_active`, `manual`", "`fixed_rate`",
                     "fixed_rate: `rate` per `interval_s`; max_active: keep at most `max_active` sessions in, "
                     "refilling a slot as soon as one ends; manual: only the admin API's POST .../serving admits."),
    "inlet.rate": ("integer", "`60`", "fixed_rate: admissions per interval (1 to 10,000,000)."),
    "inlet.interval_s": ("number", "`60`", "fixed_rate: the interval, in seconds (0.001 to 86,400)."),
    "inlet.max_active": ("integer", "`0` (fixed_rate), **required** (max_active)",
                         "max_active: the cap on sessions in at once; fixed_rate: an optional cap on top of the rate "
                         "(0: none), as Cloudflare's new_users_per_minute with total_active_users."),
    "priority_classes": ("list of string", "`[general]`",
                         "1-16 class names, highest priority first; the last is the default class. A site claim "
                         "(claim_secret) puts a visitor in another. Changing them on a live room keeps every waiter "
                         "(class_mapping in the admin PUT names the class that takes a removed class's waiters)."),
    "inventory": ("integer or null", "null", "Admissions ever, then the room is sold out (null: no limit)."),
    "heartbeat_s": ("number", "`300`", "A waiter who stops polling this long loses the place (1 to 86,400)."),
    "session_duration_s": ("number", "`600`",
                           "An admitted visitor's session, and the access token's lifetime, from taking the token "
                           "(1 to 2,592,000); with max_session_s the time without a request that ends it."),
    "max_session_s": ("number or null", "null",
                      "Renew the session while the visitor is active on the site: forward-auth re-issues the access "
                      "cookie once a token is past half its life, keeping the slot, up to this long from when the "
                      "token was first taken (at least session_duration_s). null: no renewal."),
    "claim_timeout_s": ("number or null", "null",
                        "An admitted visitor who takes no token this long frees the slot (null: session_duration_s)."),
    "rejoin_grace_s": ("number", "`0`", "A waiter who expired and joins again within this gets the old place back; "
                       "later (or 0), a new one at the back."),
    "refresh_interval_s": ("number", "`5`", "How often the page polls the status (0.1 to 3,600)."),
    "schedule": ("section", "", "When the room is open; before the start joins form the pre-queue."),
    "schedule.start": ("epoch seconds, ISO-8601 or null", "null", "Admissions begin (null: open now)."),
    "schedule.end": ("epoch seconds, ISO-8601 or null", "null", "The room closes; those still waiting are told so."),
    "paused": ("boolean", "`false`", "Nobody is admitted (joins and polls go on; places are kept)."),
    "claim_secret": ("string (secret) or null", "null",
                     "The site's shared HS256 secret for signed claims (priority class, exemption); at least 32 "
                     "characters; never shown by the admin API."),
    "origins": ("list of string", "`[]`",
                "The protected site's URLs (up to 16): hand-off targets, the first the default; return_to must be "
                "on one of them. Empty: no hand-off (the JSON flow only)."),
    "cookie_domain": ("string or null", "null", "Domain of the access cookie (null: the host that served the room)."),
    "cookie_secure": ("boolean", "`true`", "Mark the cookies Secure; false only for plain-http local testing."),
    "client_request_ids": ("boolean", "`false`", "Let the JSON API's join name its own request id (16-128 random "
                           "characters), so a retried join gets the same place."),
    "display_name": ("string or null", "null", "The page's title for visitors, 1-100 characters (null: the room id)."),
    "language": ("one of `en`, `de`, `fr`, `es`, `ja`, or null", "null",
                 "Force the page's language (null: the visitor's Accept-Language)."),
    "page_template": ("string or null", "null", "A Jinja2 template for the page (README, \"The waiting page\"); "
                      "checked when the room is set, up to 65,536 characters."),
    "bot_protection": ("`false`, `true` or section", "`true`",
                       "A proof-of-work challenge (ALTCHA) before a public join (README, \"Bot protection before "
                       "joining\"); visitors who hold a place or a site claim skip it. false: off."),
    "bot_protection.altcha.max_number": ("integer", "`100000`",
                                         "The challenge's cost: the largest number a solver may have to try "
                                         "(1,000 to 10,000,000; about 1.8 s in a browser at the default)."),
    "bot_protection.altcha.expires_s": ("number", "`300`", "How long a challenge can be solved and used (10 to 3,600)."),
}
PAGE_LANGUAGES = ("en", "de", "fr", "es", "ja")  # the default page's translations (streams/http/waitingroom/page.py)
PAGE_TEMPLATE_MAX = 65_536


class SettingsError(ValueError):
    """A room setting is invalid; `path` names the setting (e.g. "rooms.sale.inlet.rate")."""

    def __init__(self, path: str, expected: str, got: Any):
        self.path = path
        super().__init__(f"{path}: expected {expected}, got {got!r}")


@dataclass(frozen=True, slots=True)
class InletPolicy:
    policy: str = "fixed_rate"
    rate: int = 60            # fixed_rate: admissions per interval
    interval_s: float = 60.0  # fixed_rate: the interval
    max_active: int = 0       # max_active: cap on active sessions; fixed_rate: an optional cap too (0: none)

    @property
    def rate_per_s(self) -> float:
        return self.rate / self.interval_s if self.policy == "fixed_rate" else 0.0


@dataclass(frozen=True, slots=True)
class BotProtection:
    """The ALTCHA proof-of-work a public join must carry: the solver tries on average max_number / 2 SHA-256
    hashes (README: the measured time in a browser), the server checks one."""
    max_number: int = 100_000  # the cost: the secret number is drawn from 0..max_number
    expires_s: float = 300.0   # a challenge must be solved and used within this


@dataclass(frozen=True, slots=True)
class RoomSettings:
    room_id: str
    queueing_method: str = "fifo"
    inlet: InletPolicy = field(default_factory=InletPolicy)
    priority_classes: tuple[str, ...] = ("general",)
    inventory: int | None = None
    heartbeat_s: float = 300.0
    session_duration_s: float = 600.0
    refresh_interval_s: float = 5.0
    schedule_start: float | None = None
    schedule_end: float | None = None
    paused: bool = False
    claim_secret: str | None = None
    origins: tuple[str, ...] = ()
    cookie_domain: str | None = None
    cookie_secure: bool = True
    client_request_ids: bool = False
    display_name: str | None = None
    language: str | None = None
    page_template: str | None = None
    claim_timeout_s: float | None = None
    rejoin_grace_s: float = 0.0
    max_session_s: float | None = None  # None: a session is never renewed (it ends session_duration_s after issue)
    # on by default: a room's join is open to the internet unless the site signs claims for its visitors
    bot_protection: BotProtection | None = field(default_factory=BotProtection)

    @property
    def claim_timeout(self) -> float:
        """Seconds an admitted visitor has to take the access token before the slot goes to the next one."""
        return self.session_duration_s if self.claim_timeout_s is None else self.claim_timeout_s

    @property
    def default_class(self) -> str:
        return self.priority_classes[-1]

    def class_rank(self, name: str) -> int:
        return self.priority_classes.index(name)

    def phase(self, now_s: float) -> str:
        """'pre' before the schedule starts (joins form the pre-queue), 'closed' after it ends, else 'open'."""
        if self.schedule_start is not None and now_s < self.schedule_start:
            return "pre"
        if self.schedule_end is not None and now_s >= self.schedule_end:
            return "closed"
        return "open"

    def to_dict(self) -> dict[str, Any]:
        """The settings as stored and shown; the hand-off keys only when set, so a room that does not use
        them stays readable by workers of the previous version (they refuse unknown keys) while a rolling
        upgrade runs."""
        inlet: dict[str, Any] = {"policy": self.inlet.policy}
        if self.inlet.policy == "fixed_rate":
            inlet.update(rate=self.inlet.rate, interval_s=self.inlet.interval_s)
            if self.inlet.max_active:
                inlet["max_active"] = self.inlet.max_active
        elif self.inlet.policy == "max_active":
            inlet["max_active"] = self.inlet.max_active
        d: dict[str, Any] = {
            "queueing_method": self.queueing_method, "inlet": inlet,
            "priority_classes": list(self.priority_classes), "inventory": self.inventory,
            "heartbeat_s": self.heartbeat_s, "session_duration_s": self.session_duration_s,
            "refresh_interval_s": self.refresh_interval_s,
            "schedule": {"start": self.schedule_start, "end": self.schedule_end},
            "paused": self.paused, "claim_secret": self.claim_secret,
        }
        if self.origins or self.cookie_domain is not None or not self.cookie_secure:
            d.update(origins=list(self.origins), cookie_domain=self.cookie_domain, cookie_secure=self.cookie_secure)
        if self.client_request_ids:
            d["client_request_ids"] = True
        if self.claim_timeout_s is not None:
            d["claim_timeout_s"] = self.claim_timeout_s
        if self.rejoin_grace_s:
            d["rejoin_grace_s"] = self.rejoin_grace_s
        if self.max_session_s is not None:
            d["max_session_s"] = self.max_session_s
        for key in ("display_name", "language", "page_template"):  # only when set: as the hand-off keys above
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.bot_protection != BotProtection():  # the default is not written, as the hand-off keys above
            bp = self.bot_protection
            d["bot_protection"] = False if bp is None else {"altcha": {"max_number": bp.max_number,
                                                                       "expires_s": bp.expires_s}}
        return d


def _num(path: str, value: Any, *, minimum: float, maximum: float, integer: bool = False) -> float:
    """A number within bounds: a huge value (1e306 seconds) would break the arithmetic of admissions."""
    kind = "an integer" if integer else "a number"
    expected = f"{kind} from {minimum:g} to {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise SettingsError(path, expected, value)
    if not minimum <= value <= maximum:  # also refuses NaN
        raise SettingsError(path, expected, value)
    return value


DAY_S = 86_400


def _time(path: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if dt.tzinfo is not None:
                return dt.timestamp()
    raise SettingsError(path, "epoch seconds or an ISO-8601 time with a timezone", value)


def origin_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL with a host and no user info, else None: what the hand-off
    compares, so `https://Shop.example.com:443/x` and `https://shop.example.com` are the same origin."""
    if not isinstance(url, str) or not url.isascii() or "\\" in url or any(c <= " " or c == "\x7f" for c in url):
        return None  # a backslash or control character is read differently by browsers: never a target
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _origins(path: str, value: Any) -> tuple[str, ...]:
    expected = "a list of up to 16 http(s) URLs of the protected site, e.g. ['https://shop.example.com']"
    if not isinstance(value, list) or len(value) > 16:
        raise SettingsError(path, expected, value)
    for i, url in enumerate(value):
        if origin_key(url) is None or urlsplit(url).query or urlsplit(url).fragment:
            raise SettingsError(f"{path}[{i}]", "an http(s) URL with a host, no user info, query or fragment", url)
    return tuple(value)


def _cookie_domain(path: str, value: Any) -> str | None:
    if value is None:
        return None
    domain = value[1:] if isinstance(value, str) and value.startswith(".") else value
    if (not isinstance(domain, str) or not 0 < len(domain) <= 253
            or not all(label and all((c.isascii() and c.isalnum()) or c == "-" for c in label)
                       for label in domain.split("."))):
        raise SettingsError(path, "a domain name such as example.com (the cookie is sent to it and its subdomains)", value)
    return domain.lower()


def valid_room_id(room_id: Any, path: str = "room") -> str:
    if not isinstance(room_id, str) or not room_id or len(room_id) > 64 or not all(
        (c.isascii() and c.isalnum()) or c in "-_." for c in room_id
    ):  # ASCII only: no Unicode lookalikes of another room's id
        raise SettingsError(path, "a room id of 1-64 ASCII letters, digits, '-', '_' or '.'", room_id)
    return room_id


def parse_room_settings(room_id: str, raw: Any, path: str | None = None) -> RoomSettings:
    path = path or f"rooms.{room_id}"
    valid_room_id(room_id, path)
    if not isinstance(raw, dict):
        raise SettingsError(path, "an object of room settings", raw)
    unknown = sorted(set(raw) - _ROOM_KEYS)
    if unknown:
        raise SettingsError(f"{path}.{unknown[0]}", f"one of {sorted(_ROOM_KEYS)}", unknown[0])

    method = raw.get("queueing_method", "fifo")
    if method not in QUEUEING_METHODS:
        raise SettingsError(f"{path}.queueing_method", f"one of {list(QUEUEING_METHODS)}", method)

    inlet_raw = raw.get("inlet", {"policy": "fixed_rate"})
    if not isinstance(inlet_raw, dict):
        raise SettingsError(f"{path}.inlet", "an object with 'policy'", inlet_raw)
    policy = inlet_raw.get("policy")
    if policy not in INLET_POLICIES:
        raise SettingsError(f"{path}.inlet.policy", f"one of {list(INLET_POLICIES)}", policy)
    allowed = {"fixed_rate": {"policy", "rate", "interval_s", "max_active"}, "max_active": {"policy", "max_active"},
               "manual": {"policy"}}[policy]
    extra = sorted(set(inlet_raw) - allowed)
    if extra:
        raise SettingsError(f"{path}.inlet.{extra[0]}", f"only {sorted(allowed)} for policy {policy!r}", extra[0])
    if policy == "fixed_rate":
        inlet = InletPolicy(policy, rate=int(_num(f"{path}.inlet.rate", inlet_raw.get("rate", 60), minimum=1,
                                                  maximum=10_000_000, integer=True)),
                            interval_s=float(_num(f"{path}.inlet.interval_s", inlet_raw.get("interval_s", 60),
                                                  minimum=0.001, maximum=DAY_S)),
                            # both at once, as Cloudflare's new_users_per_minute with total_active_users
                            max_active=int(_num(f"{path}.inlet.max_active", inlet_raw.get("max_active", 0),
                                                minimum=0, maximum=100_000_000, integer=True)))
    elif policy == "max_active":
        if "max_active" not in inlet_raw:
            raise SettingsError(f"{path}.inlet.max_active", "an integer >= 1", None)
        inlet = InletPolicy(policy, max_active=int(_num(f"{path}.inlet.max_active", inlet_raw["max_active"],
                                                        minimum=1, maximum=100_000_000, integer=True)))
    else:
        inlet = InletPolicy(policy)

    classes = raw.get("priority_classes", ["general"])
    if (not isinstance(classes, list) or not classes or len(classes) > 16
            or not all(isinstance(c, str) and c and len(c) <= 32 for c in classes) or len(set(classes)) != len(classes)):
        raise SettingsError(f"{path}.priority_classes", "a list of 1-16 distinct non-empty names, highest priority first",
                            classes)

    inventory = raw.get("inventory")
    if inventory is not None:
        inventory = int(_num(f"{path}.inventory", inventory, minimum=0, maximum=2**53, integer=True))

    schedule = raw.get("schedule") or {}
    if not isinstance(schedule, dict) or set(schedule) - {"start", "end"}:
        raise SettingsError(f"{path}.schedule", "an object with optional 'start' and 'end'", schedule)
    start = _time(f"{path}.schedule.start", schedule.get("start"))
    end = _time(f"{path}.schedule.end", schedule.get("end"))
    if start is not None and end is not None and end <= start:
        raise SettingsError(f"{path}.schedule.end", "a time after schedule.start", schedule.get("end"))
    if method == "random" and start is None:
        raise SettingsError(f"{path}.schedule.start",
                            "a start time: the 'random' method shuffles those who joined before it", None)

    paused = raw.get("paused", False)
    if not isinstance(paused, bool):
        raise SettingsError(f"{path}.paused", "true or false", paused)
    secret = raw.get("claim_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 32):
        raise SettingsError(f"{path}.claim_secret", "a shared secret of at least 32 characters", "<redacted>")

    cookie_secure = raw.get("cookie_secure", True)
    if not isinstance(cookie_secure, bool):
        raise SettingsError(f"{path}.cookie_secure", "true or false", cookie_secure)

    client_ids = raw.get("client_request_ids", False)
    if not isinstance(client_ids, bool):
        raise SettingsError(f"{path}.client_request_ids", "true or false", client_ids)

    claim_timeout = raw.get("claim_timeout_s")
    if claim_timeout is not None:
        claim_timeout = float(_num(f"{path}.claim_timeout_s", claim_timeout, minimum=1, maximum=30 * DAY_S))

    session_s = float(_num(f"{path}.session_duration_s", raw.get("session_duration_s", 600), minimum=1, maximum=30 * DAY_S))
    max_session = raw.get("max_session_s")
    if max_session is not None:
        max_session = float(_num(f"{path}.max_session_s", max_session, minimum=session_s, maximum=30 * DAY_S))

    display_name = raw.get("display_name")
    if display_name is not None and (not isinstance(display_name, str) or not 0 < len(display_name.strip()) <= 100):
        raise SettingsError(f"{path}.display_name", "the room's name for visitors, 1-100 characters", display_name)
    language = raw.get("language")
    if language is not None and language not in PAGE_LANGUAGES:
        raise SettingsError(f"{path}.language", f"one of {list(PAGE_LANGUAGES)} (null: the visitor's Accept-Language)",
                            language)
    template = raw.get("page_template")
    if template is not None:
        _template(f"{path}.page_template", template)

    return RoomSettings(
        bot_protection=_bot_protection(f"{path}.bot_protection", raw.get("bot_protection", True)),
        display_name=display_name, language=language, page_template=template,
        room_id=room_id, claim_timeout_s=claim_timeout,
        rejoin_grace_s=float(_num(f"{path}.rejoin_grace_s", raw.get("rejoin_grace_s", 0), minimum=0, maximum=DAY_S)),
        client_request_ids=client_ids, queueing_method=method, inlet=inlet, priority_classes=tuple(classes),
        inventory=inventory,
        heartbeat_s=float(_num(f"{path}.heartbeat_s", raw.get("heartbeat_s", 300), minimum=1, maximum=DAY_S)),
        session_duration_s=session_s, max_session_s=max_session,
        refresh_interval_s=float(_num(f"{path}.refresh_interval_s", raw.get("refresh_interval_s", 5), minimum=0.1,
                                      maximum=3600)),
        schedule_start=start, schedule_end=end, paused=paused, claim_secret=secret,
        origins=_origins(f"{path}.origins", raw.get("origins", [])),
        cookie_domain=_cookie_domain(f"{path}.cookie_domain", raw.get("cookie_domain")), cookie_secure=cookie_secure,
    )


def _bot_protection(path: str, value: Any) -> BotProtection | None:
    if value is False:
        return None
    if value is True:
        return BotProtection()
    expected = "false (off), true (the default cost) or {altcha: {max_number: 1000-10000000, expires_s: 10-3600}}"
    if not isinstance(value, dict) or set(value) != {"altcha"}:
        raise SettingsError(path, expected, value)
    altcha = value["altcha"] if value["altcha"] is not None else {}
    if not isinstance(altcha, dict):
        raise SettingsError(f"{path}.altcha", "an object with optional max_number and expires_s", altcha)
    extra = sorted(set(altcha) - {"max_number", "expires_s"})
    if extra:
        raise SettingsError(f"{path}.altcha.{extra[0]}", "one of ['expires_s', 'max_number']", extra[0])
    default = BotProtection()
    return BotProtection(
        max_number=int(_num(f"{path}.altcha.max_number", altcha.get("max_number", default.max_number), minimum=1000,
                            maximum=10_000_000, integer=True)),
        expires_s=float(_num(f"{path}.altcha.expires_s", altcha.get("expires_s", default.expires_s), minimum=10,
                             maximum=3600)))


def _template(path: str, source: Any) -> None:
    """A page template is checked when the room is set, so a typo is an error for the admin, not a blank page for
    visitors."""
    import jinja2  # here, not at the top: only rooms with their own page need it

    if not isinstance(source, str) or not 0 < len(source) <= PAGE_TEMPLATE_MAX:
        raise SettingsError(path, f"a Jinja2 template of 1-{PAGE_TEMPLATE_MAX} characters", "<template>")
    try:
        jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise SettingsError(path, f"a valid Jinja2 template (line {exc.lineno}: {exc.message})", "<template>") from None
