"""Room settings: good ones parse, bad ones name the setting and what was expected."""
from __future__ import annotations

import pytest

from processors.waitingroom.settings import _ROOM_KEYS, ROOM_SETTINGS, SettingsError, parse_room_settings


def test_defaults_and_full_settings():
    s = parse_room_settings("sale", {})
    assert s.queueing_method == "fifo" and s.inlet.policy == "fixed_rate" and s.heartbeat_s == 300
    full = parse_room_settings("sale", {
        "queueing_method": "random", "inlet": {"policy": "max_active", "max_active": 50},
        "priority_classes": ["vip", "general"], "inventory": 1000, "heartbeat_s": 120,
        "session_duration_s": 900, "refresh_interval_s": 2, "paused": True, "claim_secret": "c" * 32,
        "claim_timeout_s": 60, "rejoin_grace_s": 30,
        "schedule": {"start": "2030-01-01T10:00:00+00:00", "end": 1893492000 + 3600},
    })
    assert full.inlet.max_active == 50 and full.default_class == "general" and full.class_rank("vip") == 0
    assert full.claim_timeout == 60 and full.rejoin_grace_s == 30 and s.claim_timeout == s.session_duration_s
    assert full.phase(full.schedule_start - 1) == "pre" and full.phase(full.schedule_start) == "open"
    assert full.phase(full.schedule_end) == "closed"
    assert parse_room_settings("sale", full.to_dict()) == full


@pytest.mark.parametrize("raw,path,expected", [
    ({"queueing_method": "lifo"}, "rooms.sale.queueing_method", "one of"),
    ({"inlet": {"policy": "fixed_rate", "rate": 0}}, "rooms.sale.inlet.rate", "integer from 1 to"),
    ({"inlet": {"policy": "fixed_rate", "rate": "10"}}, "rooms.sale.inlet.rate", "integer"),
    ({"inlet": {"policy": "max_active"}}, "rooms.sale.inlet.max_active", "integer >= 1"),
    ({"inlet": {"policy": "manual", "rate": 5}}, "rooms.sale.inlet.rate", "only"),
    ({"inlet": {"policy": "burst"}}, "rooms.sale.inlet.policy", "one of"),
    ({"priority_classes": []}, "rooms.sale.priority_classes", "list of 1-16"),
    ({"priority_classes": ["a", "a"]}, "rooms.sale.priority_classes", "distinct"),
    ({"inventory": -1}, "rooms.sale.inventory", "from 0 to"),
    # issue 21 item 16: 1e306 s used to be accepted and broke every admission after it
    ({"heartbeat_s": 1e306}, "rooms.sale.heartbeat_s", "a number from 1 to 86400"),
    ({"heartbeat_s": float("nan")}, "rooms.sale.heartbeat_s", "a number from 1 to 86400"),
    ({"session_duration_s": 1e12}, "rooms.sale.session_duration_s", "from 1 to 2.592e+06"),
    ({"inlet": {"policy": "fixed_rate", "interval_s": 1e300}}, "rooms.sale.inlet.interval_s", "to 86400"),
    ({"heartbeat_s": True}, "rooms.sale.heartbeat_s", "number"),
    ({"schedule": {"start": "tomorrow"}}, "rooms.sale.schedule.start", "ISO-8601"),
    ({"origins": ["shop.example.com"]}, "rooms.sale.origins[0]", "http(s) URL"),
    ({"origins": ["ftp://shop.example.com"]}, "rooms.sale.origins[0]", "http(s) URL"),
    ({"origins": ["https://user@shop.example.com"]}, "rooms.sale.origins[0]", "no user info"),
    ({"origins": ["https://shop.example.com/#top"]}, "rooms.sale.origins[0]", "fragment"),
    ({"origins": "https://shop.example.com"}, "rooms.sale.origins", "list of up to 16"),
    ({"cookie_domain": "example.com; Secure"}, "rooms.sale.cookie_domain", "domain name"),
    ({"cookie_domain": ""}, "rooms.sale.cookie_domain", "domain name"),
    ({"cookie_secure": "false"}, "rooms.sale.cookie_secure", "true or false"),
    ({"schedule": {"start": "2030-01-01T10:00:00"}}, "rooms.sale.schedule.start", "timezone"),
    ({"schedule": {"start": 200, "end": 100}}, "rooms.sale.schedule.end", "after"),
    ({"queueing_method": "random"}, "rooms.sale.schedule.start", "start time"),
    ({"claim_secret": "short"}, "rooms.sale.claim_secret", "at least 32"),
    ({"paused": "yes"}, "rooms.sale.paused", "true or false"),
    ({"client_request_ids": 1}, "rooms.sale.client_request_ids", "true or false"),
    ({"capacity": 5}, "rooms.sale.capacity", "one of"),
    ({"inlet": {"policy": "fixed_rate", "max_active": -1}}, "rooms.sale.inlet.max_active", "integer from 0 to"),
    ({"claim_timeout_s": 0}, "rooms.sale.claim_timeout_s", "a number from 1 to"),
    ({"session_duration_s": 600, "max_session_s": 60}, "rooms.sale.max_session_s", "a number from 600 to"),
    ({"rejoin_grace_s": 1e9}, "rooms.sale.rejoin_grace_s", "a number from 0 to 86400"),
])
def test_bad_settings_name_path_and_expectation(raw, path, expected):
    with pytest.raises(SettingsError) as err:
        parse_room_settings("sale", raw)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": expected") and expected in str(err.value)


def test_room_id_is_checked():
    with pytest.raises(SettingsError) as err:
        parse_room_settings("bad room/1", {})
    assert "room id" in str(err.value)
    with pytest.raises(SettingsError, match="ASCII"):  # a Cyrillic "а": a lookalike of room "sale"
        parse_room_settings("s\u0430le", {})


def test_secret_is_not_echoed():
    with pytest.raises(SettingsError) as err:
        parse_room_settings("sale", {"claim_secret": "hunter2"})
    assert "hunter2" not in str(err.value)


def test_hand_off_settings_round_trip_and_stay_out_of_rooms_that_do_not_use_them():
    room = parse_room_settings("sale", {"origins": ["https://shop.example.com", "http://localhost:8000/start"],
                                        "cookie_domain": ".Example.COM", "cookie_secure": False})
    assert room.origins == ("https://shop.example.com", "http://localhost:8000/start")
    assert room.cookie_domain == "example.com" and room.cookie_secure is False
    assert parse_room_settings("sale", room.to_dict()) == room
    # a room without them is stored as before, so workers of the previous version still read it
    plain = parse_room_settings("sale", {}).to_dict()
    assert not {"origins", "cookie_domain", "cookie_secure", "client_request_ids"} & set(plain)
    assert parse_room_settings("sale", {}).client_request_ids is False  # the server makes request ids by default
    retries = parse_room_settings("sale", {"client_request_ids": True})
    assert parse_room_settings("sale", retries.to_dict()) == retries
    assert parse_room_settings("sale", {}).cookie_secure is True


def test_hand_off_targets_stay_on_the_rooms_origins():
    from processors.waitingroom.handoff import handoff_target, original_url

    room = parse_room_settings("sale", {"origins": ["https://shop.example.com", "https://www.example.com:8443/x"]})
    assert handoff_target(room, "https://SHOP.example.com:443/a?b=1") == "https://SHOP.example.com:443/a?b=1"
    assert handoff_target(room, "https://www.example.com:8443/") == "https://www.example.com:8443/"
    for bad in (None, "", "https://www.example.com/", "http://shop.example.com/", "https://shop.example.com.evil/",
                "https://a@shop.example.com/", "//shop.example.com/", "https://shop.example.com\\@evil/",
                "https://shop.example.com/\t", "https://shöp.example.com/", "https://shop.example.com:99999/"):
        assert handoff_target(room, bad) == "https://shop.example.com", bad
    assert handoff_target(parse_room_settings("sale", {}), "https://shop.example.com/") is None
    # what each proxy tells forward-auth about the request it checks
    assert original_url({"X-Original-URL": "https://shop.example.com/a?b=1", "Host": "room"}) == \
        "https://shop.example.com/a?b=1"
    assert original_url({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com",
                         "X-Forwarded-Uri": "/a?b=1", "Host": "room"}) == "https://shop.example.com/a?b=1"
    assert original_url({"Host": "shop.example.com", "X-Forwarded-Proto": "http"}, "/a") == "http://shop.example.com/a"
    assert original_url({"Host": "shop.example.com"}) is None


def test_every_room_setting_is_documented():
    """ROOM_SETTINGS feeds the configuration reference (deploy/README.md): it names every key a room takes, the
    inlet's and the schedule's included, and nothing a room does not take."""
    assert {k.split(".")[0] for k in ROOM_SETTINGS} == _ROOM_KEYS
    for sub in ("policy", "rate", "interval_s", "max_active"):
        assert f"inlet.{sub}" in ROOM_SETTINGS
    assert {"schedule.start", "schedule.end"} <= set(ROOM_SETTINGS)
    for key, raw in (("inlet.extra", {"inlet": {"policy": "fixed_rate", "extra": 1}}),
                     ("schedule.extra", {"schedule": {"extra": 1}}), ("extra", {"extra": 1})):
        with pytest.raises(SettingsError):  # what is not documented is refused
            parse_room_settings("sale", raw)
        assert key not in ROOM_SETTINGS
    full = parse_room_settings("sale", {"inlet": {"policy": "fixed_rate", "rate": 5, "interval_s": 1, "max_active": 9},
                                        "max_session_s": 3600, "origins": ["https://a.example"], "rejoin_grace_s": 5,
                                        "claim_timeout_s": 5, "client_request_ids": True, "display_name": "x",
                                        "language": "de", "page_template": "{{ waitingroom_script }}"}).to_dict()
    assert set(full) <= _ROOM_KEYS and all(f"inlet.{k}" in ROOM_SETTINGS for k in full["inlet"])


def test_bot_protection_is_on_by_default_and_a_setting_turns_it_off_or_sets_its_cost():
    from processors.waitingroom.settings import BotProtection

    assert parse_room_settings("sale", {}).bot_protection == BotProtection()
    assert "bot_protection" not in parse_room_settings("sale", {}).to_dict()  # the default is not written
    off = parse_room_settings("sale", {"bot_protection": False})
    assert off.bot_protection is None and off.to_dict()["bot_protection"] is False
    cheap = parse_room_settings("sale", {"bot_protection": {"altcha": {"max_number": 5000}}})
    assert cheap.bot_protection == BotProtection(max_number=5000)
    assert parse_room_settings("sale", cheap.to_dict()) == cheap  # stored and read back alike


@pytest.mark.parametrize("value, path", [
    ({"altcha": {"max_number": 10}}, "rooms.sale.bot_protection.altcha.max_number"),
    ({"altcha": {"max_number": 1.5e6}}, "rooms.sale.bot_protection.altcha.max_number"),
    ({"altcha": {"expires_s": 1}}, "rooms.sale.bot_protection.altcha.expires_s"),
    ({"altcha": {"cost": 1}}, "rooms.sale.bot_protection.altcha.cost"),
    ({"altcha": []}, "rooms.sale.bot_protection.altcha"),
    ({"hcaptcha": {}}, "rooms.sale.bot_protection"),
    ("yes", "rooms.sale.bot_protection"),
])
def test_a_bad_bot_protection_names_the_key(value, path):
    with pytest.raises(SettingsError) as err:
        parse_room_settings("sale", {"bot_protection": value})
    assert err.value.path == path


def test_the_readmes_bot_protection_example_parses_to_what_it_says():
    from pathlib import Path

    import yaml

    from processors.waitingroom.settings import BotProtection

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    section = readme.split("### Bot protection before joining (ALTCHA)\n", 1)[1]
    rooms = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])["rooms"]
    assert parse_room_settings("sale", rooms["sale"]).bot_protection == BotProtection()  # the default, spelled out
    assert parse_room_settings("internal", rooms["internal"]).bot_protection is None
    with pytest.raises(SettingsError) as err:
        parse_room_settings("sale", {"bot_protection": {"altcha": {"max_number": 10}}})
    assert f"`{err.value}`" in " ".join(section.split())  # the error the README quotes is the real one
