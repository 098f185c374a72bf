"""The waiting page's pure parts: colours people can read, the language chosen, what each state tells a
visitor, and a shop's own template (escaped, checked when the room is set)."""
from __future__ import annotations

import pytest

from processors.waitingroom.settings import SettingsError, parse_room_settings
from streams.http.waitingroom import page


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_formula_matches_wcag_examples():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-fails-AA grey


@pytest.mark.parametrize("fg,bg", page.CONTRAST_PAIRS)
def test_default_colours_meet_wcag_aa(fg, bg):
    assert contrast(page.PALETTE[fg], page.PALETTE[bg]) >= 4.5, (fg, bg)


@pytest.mark.parametrize("header,forced,expected", [
    ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
    ("fr-CH, fr;q=0.9, en;q=0.8", None, "fr"),
    ("en;q=0.5, ja", None, "ja"),              # q-values, not order, decide
    ("pt-BR, es;q=0.7", None, "es"),           # the first one we have
    ("zh-CN", None, "en"),                     # none we have: English
    ("", None, "en"),
    ("de;q=abc, es", None, "es"),              # a malformed entry is skipped
    ("de", "ja", "ja"),                        # the room's setting wins
])
def test_language_from_accept_language_or_the_room(header, forced, expected):
    assert page.language(header, forced) == expected


def _status(**kw):
    s = {"state": "waiting", "position": 10, "people_ahead": 3, "serving_counter": 6, "eta_s": 125.0, "paused": False,
         "phase": "open", "sold_out": False}
    s.update(kw)
    return s


def test_position_counts_down_with_the_people_ahead():
    settings = parse_room_settings("sale", {})
    v = page.variables(settings, "sale", "en", "waiting", _status())
    assert v["position"] == 4 and v["people_ahead"] == 3 and v["queue_number"] == 10
    assert v["wait_time_known"] and v["estimated_wait_minutes"] == 3 and v["estimated_wait"] == "3 min"
    assert v["now_serving"] == 6 and v["room_name"] == "sale"


def test_now_serving_is_hidden_where_it_means_nothing():
    classes = parse_room_settings("sale", {"priority_classes": ["vip", "general"]})
    assert page.variables(classes, "sale", "en", "waiting", _status())["now_serving"] is None
    html = page.render(classes, "sale", "en", "waiting", _status()).decode()
    assert "Now serving" not in html and "People ahead of you" in html


@pytest.mark.parametrize("status,room,expected", [
    (None, {}, "joining"),
    (None, {"schedule": {"end": 100}}, "closed"),
    (None, {"queueing_method": "reject"}, "closed"),
    (_status(), {}, "waiting"),
    (_status(phase="pre"), {}, "prequeue"),
    (_status(paused=True), {}, "paused"),
    (_status(phase="closed", eta_s=None), {}, "closed"),       # was "waiting" with an ETA forever
    (_status(sold_out=True), {}, "sold_out"),
    (_status(state="admitted"), {}, "admitted"),
    (_status(state="expired"), {}, "expired"),
    (_status(state="completed"), {}, "ended"),
])
def test_what_each_visitor_is_told(status, room, expected):
    assert page.page_state(parse_room_settings("sale", room), status, {"admitted_total": 0}, 1_000.0) == expected


def test_a_room_that_sold_out_says_so_to_newcomers():
    settings = parse_room_settings("sale", {"inventory": 5})
    assert page.page_state(settings, None, {"admitted_total": 5}, 0.0) == "sold_out"


def test_every_language_has_a_title_for_every_state():
    for lang, texts in page.TEXTS.items():
        for state in page.STATES:
            assert state + "_title" in texts or state in ("prequeue", "waiting"), (lang, state)


def test_a_shops_template_gets_the_variables_escaped():
    template = ("<html lang='{{ lang }}'><h1>{{ room_name }}</h1><p id='wr-live' data-state='{{ state }}'>"
                "{{ people_ahead }} ahead, about {{ estimated_wait_minutes }} min{% if not wait_time_known %}?{% endif %}"
                "</p>{{ waitingroom_script }}</html>")
    settings = parse_room_settings("sale", {"page_template": template, "display_name": "<Summer> & sale",
                                            "language": "es"})
    html = page.render(settings, "sale", "es", "waiting", _status()).decode()
    assert "<h1>&lt;Summer&gt; &amp; sale</h1>" in html and "3 ahead, about 3 min</p>" in html
    assert "<script>" in html  # the script is markup, not escaped text
    assert settings.to_dict()["language"] == "es"


def test_a_broken_template_is_refused_when_the_room_is_set():
    with pytest.raises(SettingsError) as err:
        parse_room_settings("sale", {"page_template": "<p>{% if state %}</p>"})
    assert err.value.path == "rooms.sale.page_template" and "line 1" in str(err.value)
    with pytest.raises(SettingsError):
        parse_room_settings("sale", {"language": "it"})


def test_a_template_that_fails_while_rendering_gives_way_to_the_default_page():
    settings = parse_room_settings("sale", {"page_template": "{{ 1 // 0 }}"})
    html = page.render(settings, "sale", "en", "waiting", _status()).decode()
    assert "You are in line" in html and "ZeroDivision" not in html


def test_the_readmes_template_example_is_a_room_that_renders_every_state():
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    section = readme.split("### The waiting page: states, languages, your own template\n", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    settings = parse_room_settings("sale", example["rooms"]["sale"])
    for state in page.STATES:
        status = _status(state="expired") if state == "expired" else _status()
        html = page.render(settings, "sale", "de", state, status).decode()
        assert 'id="wr-live"' in html and f'data-state="{state}"' in html and "<script>" in html, state
    assert "3 people ahead of you." in page.render(settings, "sale", "de", "waiting", _status()).decode()


def test_an_unknown_rooms_page_does_not_repeat_what_the_link_said():
    html = page.render(None, "Call-0800-123-for-a-refund", "en", "not_found", None).decode()
    assert "There is no waiting room here" in html and "0800" not in html


def test_every_language_table_has_every_key_of_the_english_one():
    for lang, table in page.TEXTS.items():
        missing = sorted(set(page.TEXTS["en"]) - set(table))
        assert not missing, f"{lang} lacks {missing}"
        assert all(table[k].strip() for k in table), lang


@pytest.mark.parametrize("lang", sorted(page.TEXTS))
def test_a_protected_room_says_in_words_that_the_browser_proves_it_is_no_bot(lang):
    protected = parse_room_settings("sale", {})  # on by default
    html = page.render(protected, "sale", lang, "joining", None).decode()
    assert page.TEXTS[lang]["challenge_body"] in html and f"../../static/{page.ALTCHA_WIDGET}" in html
    assert "var challenge = true;" in html
    open_room = parse_room_settings("sale", {"bot_protection": False})
    html = page.render(open_room, "sale", lang, "joining", None).decode()
    assert page.TEXTS[lang]["joining_body"] in html and "altcha" not in html.split("<script>")[0]
    assert "var challenge = false;" in html


def test_the_vendored_widget_ships_with_its_licence():
    assert page.altcha_widget().startswith(b"(function(") and b'customElements.define("altcha-widget"' in page.altcha_widget()
    licence = (page.Path(page.__file__).parent / "static" / "altcha-LICENSE.txt").read_text()
    assert licence.startswith("MIT License")


def test_the_wheel_and_sdist_ship_the_widget():
    """The static files are not Python: only pyproject's package-data puts them in the wheel and sdist."""
    import fnmatch
    import tomllib

    root = page.Path(page.__file__).resolve().parents[3]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["streams.http.waitingroom"]
    for f in (page.Path(page.__file__).parent / "static").iterdir():
        assert any(fnmatch.fnmatch(f"static/{f.name}", p) for p in patterns), f.name
