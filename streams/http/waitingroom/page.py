"""The waiting page: rendered on the server from a Jinja2 template (the default one, or the room's
`page_template`), in the visitor's language, with what they need to know in words: their place in line,
the people ahead, the wait, and why the room is not letting them in when it is not.

A small script (`waitingroom_script`, which every template includes) keeps it current: it joins when the
visitor has no place yet (in a room with bot protection, after the vendored ALTCHA widget, kept hidden, has
solved a challenge: the page says so in words), then fetches the page again every `refresh_interval_s` and swaps the contents of
the element `#wr-live` (an `aria-live` region in the default page, so screen readers hear the changes);
its `data-state` says what to do next. Once admitted it hands the visitor off to the site (a form post to
.../enter, which sets the access cookie and redirects to `return_to`) or, in a room without origins,
fetches the access token for scripts. Each fetch of the page is a status poll, so it is also the heartbeat.

The visitor's place is the queue cookie join sets (HttpOnly, on the room's path): every fetch carries it by
itself, so the page keeps no id or token of its own and a reload resumes the same place."""
from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from processors.waitingroom.settings import PAGE_LANGUAGES, RoomSettings

log = logging.getLogger("eventweir.waitingroom")

# The default page's colours: text/background pairs meet WCAG AA (4.5:1), checked by a unit test.
PALETTE = {
    "text": "#1f2933", "muted": "#4b5563", "background": "#f3f4f6", "card": "#ffffff",
    "accent": "#1d4ed8", "on_accent": "#ffffff",
    "ok_bg": "#e7f6ec", "ok_text": "#14532d", "warn_bg": "#fff4e0", "warn_text": "#7a3e00",
    "stop_bg": "#fdecec", "stop_text": "#8a1c1c",
}
CONTRAST_PAIRS = [("text", "card"), ("muted", "card"), ("text", "background"), ("muted", "background"),
                  ("on_accent", "accent"), ("accent", "card"), ("ok_text", "ok_bg"), ("warn_text", "warn_bg"),
                  ("stop_text", "stop_bg")]

# States a template sees in `state`; those after which the page keeps polling are in POLLING (the script's list).
STATES = ("joining", "prequeue", "waiting", "paused", "admitted", "expired", "ended", "sold_out", "closed",
          "unavailable", "not_found")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "Waiting room", "queue_for": "Waiting room for",
        "joining_title": "Getting you a place in line\u2026", "joining_body": "This takes a moment.",
        "challenge_body": "First your browser solves a small puzzle to show that a person is here, not a bot. "
                          "This takes a few seconds and needs nothing from you.",
        "waiting_title": "You are in line",
        "keep_open": "Keep this page open: it updates by itself, and you keep your place while it does.",
        "prequeue_title": "It has not started yet",
        "prequeue_body": "You are in line. Visitors are let in from the start time, in turn.",
        "starts_at": "Starts at",
        "your_place": "Your place in line", "people_ahead": "People ahead of you", "estimated_wait": "Estimated wait",
        "now_serving": "Now serving", "wait_unknown": "Not known yet", "under_a_minute": "less than a minute",
        "minutes": "{m} min", "hours": "{h} h {m} min",
        "paused_title": "The line is paused",
        "paused_body": "Nobody is being let in at the moment. You keep your place; the line moves again once it resumes.",
        "admitted_title": "It is your turn", "admitted_handoff": "Taking you to the site\u2026",
        "admitted_token": "You can continue now.",
        "expired_title": "Your place has expired",
        "expired_body": "The page was closed or offline for too long. You can join the line again, at the back.",
        "rejoin": "Join the line again",
        "ended_title": "Your visit has ended", "ended_body": "Thank you for visiting.",
        "sold_out_title": "Sold out", "sold_out_body": "Everything has been taken. Thank you for waiting.",
        "closed_title": "The waiting room is closed", "closed_body": "No more visitors are being let in.",
        "unavailable_title": "We are having a problem",
        "unavailable_body": "The waiting room cannot be reached right now. This page keeps trying by itself, "
                            "and you keep your place.",
        "not_found_title": "There is no waiting room here",
        "not_found_body": "Please check the address you were given.",
    },
    "de": {
        "page_title": "Warteraum", "queue_for": "Warteraum f\u00fcr",
        "joining_title": "Wir reihen Sie ein\u2026", "joining_body": "Das dauert einen Moment.",
        "challenge_body": "Zuerst l\u00f6st Ihr Browser eine kleine Aufgabe, die zeigt, dass hier ein Mensch "
                          "und kein Bot wartet. Das dauert einige Sekunden, Sie m\u00fcssen nichts tun.",
        "waiting_title": "Sie sind in der Warteschlange",
        "keep_open": "Lassen Sie diese Seite ge\u00f6ffnet: Sie aktualisiert sich selbst, und Sie behalten Ihren Platz.",
        "prequeue_title": "Es hat noch nicht begonnen",
        "prequeue_body": "Sie sind in der Warteschlange. Ab dem Startzeitpunkt wird der Reihe nach eingelassen.",
        "starts_at": "Beginn",
        "your_place": "Ihr Platz in der Warteschlange", "people_ahead": "Personen vor Ihnen",
        "estimated_wait": "Gesch\u00e4tzte Wartezeit", "now_serving": "Aktuell an der Reihe",
        "wait_unknown": "Noch unbekannt", "under_a_minute": "weniger als eine Minute",
        "minutes": "{m} Min.", "hours": "{h} Std. {m} Min.",
        "paused_title": "Die Warteschlange ist angehalten",
        "paused_body": "Im Moment wird niemand eingelassen. Sie behalten Ihren Platz; es geht weiter, sobald die "
                       "Warteschlange fortgesetzt wird.",
        "admitted_title": "Sie sind an der Reihe", "admitted_handoff": "Sie werden weitergeleitet\u2026",
        "admitted_token": "Sie k\u00f6nnen jetzt fortfahren.",
        "expired_title": "Ihr Platz ist verfallen",
        "expired_body": "Die Seite war zu lange geschlossen oder offline. Sie k\u00f6nnen sich erneut anstellen, "
                        "am Ende der Warteschlange.",
        "rejoin": "Erneut anstellen",
        "ended_title": "Ihr Besuch ist beendet", "ended_body": "Vielen Dank f\u00fcr Ihren Besuch.",
        "sold_out_title": "Ausverkauft", "sold_out_body": "Alles ist vergeben. Vielen Dank f\u00fcrs Warten.",
        "closed_title": "Der Warteraum ist geschlossen", "closed_body": "Es werden keine Besucher mehr eingelassen.",
        "unavailable_title": "Es gibt ein Problem",
        "unavailable_body": "Der Warteraum ist gerade nicht erreichbar. Diese Seite versucht es weiter, und Sie "
                            "behalten Ihren Platz.",
        "not_found_title": "Hier gibt es keinen Warteraum",
        "not_found_body": "Bitte pr\u00fcfen Sie die Adresse, die Sie erhalten haben.",
    },
    "fr": {
        "page_title": "Salle d\u2019attente", "queue_for": "Salle d\u2019attente\u00a0:",
        "joining_title": "Nous vous pla\u00e7ons dans la file\u2026", "joining_body": "Cela prend un instant.",
        "challenge_body": "Votre navigateur r\u00e9sout d\u2019abord un petit calcul qui montre qu\u2019il "
                          "s\u2019agit d\u2019une personne et non d\u2019un robot. Cela prend quelques secondes, "
                          "sans rien faire de votre part.",
        "waiting_title": "Vous \u00eates dans la file d\u2019attente",
        "keep_open": "Gardez cette page ouverte\u00a0: elle se met \u00e0 jour toute seule et vous gardez votre place.",
        "prequeue_title": "Cela n\u2019a pas encore commenc\u00e9",
        "prequeue_body": "Vous \u00eates dans la file. Les visiteurs entrent \u00e0 tour de r\u00f4le d\u00e8s "
                         "l\u2019heure de d\u00e9but.",
        "starts_at": "D\u00e9but",
        "your_place": "Votre place dans la file", "people_ahead": "Personnes devant vous",
        "estimated_wait": "Attente estim\u00e9e", "now_serving": "Num\u00e9ro servi",
        "wait_unknown": "Pas encore connue", "under_a_minute": "moins d\u2019une minute",
        "minutes": "{m} min", "hours": "{h} h {m} min",
        "paused_title": "La file est en pause",
        "paused_body": "Personne n\u2019entre pour le moment. Vous gardez votre place\u00a0; la file avancera "
                       "d\u00e8s sa reprise.",
        "admitted_title": "C\u2019est votre tour", "admitted_handoff": "Nous vous redirigeons vers le site\u2026",
        "admitted_token": "Vous pouvez continuer.",
        "expired_title": "Votre place a expir\u00e9",
        "expired_body": "La page est rest\u00e9e ferm\u00e9e ou hors ligne trop longtemps. Vous pouvez reprendre "
                        "place dans la file, \u00e0 la fin.",
        "rejoin": "Reprendre place dans la file",
        "ended_title": "Votre visite est termin\u00e9e", "ended_body": "Merci de votre visite.",
        "sold_out_title": "\u00c9puis\u00e9", "sold_out_body": "Tout est parti. Merci d\u2019avoir patient\u00e9.",
        "closed_title": "La salle d\u2019attente est ferm\u00e9e",
        "closed_body": "Plus aucun visiteur n\u2019est admis.",
        "unavailable_title": "Nous rencontrons un probl\u00e8me",
        "unavailable_body": "La salle d\u2019attente est momentan\u00e9ment injoignable. Cette page r\u00e9essaie "
                            "toute seule et vous gardez votre place.",
        "not_found_title": "Il n\u2019y a pas de salle d\u2019attente ici",
        "not_found_body": "Veuillez v\u00e9rifier l\u2019adresse que l\u2019on vous a donn\u00e9e.",
    },
    "es": {
        "page_title": "Sala de espera", "queue_for": "Sala de espera:",
        "joining_title": "Le estamos asignando un lugar en la fila\u2026", "joining_body": "Esto tarda un momento.",
        "challenge_body": "Primero su navegador resuelve un peque\u00f1o c\u00e1lculo que demuestra que es "
                          "una persona y no un robot. Tarda unos segundos y no tiene que hacer nada.",
        "waiting_title": "Est\u00e1 en la fila",
        "keep_open": "Mantenga esta p\u00e1gina abierta: se actualiza sola y usted conserva su lugar.",
        "prequeue_title": "Todav\u00eda no ha empezado",
        "prequeue_body": "Est\u00e1 en la fila. Desde la hora de inicio se deja pasar a los visitantes por turno.",
        "starts_at": "Empieza",
        "your_place": "Su lugar en la fila", "people_ahead": "Personas delante de usted",
        "estimated_wait": "Espera estimada", "now_serving": "Atendiendo al n\u00famero",
        "wait_unknown": "A\u00fan no se sabe", "under_a_minute": "menos de un minuto",
        "minutes": "{m} min", "hours": "{h} h {m} min",
        "paused_title": "La fila est\u00e1 en pausa",
        "paused_body": "En este momento no pasa nadie. Conserva su lugar; la fila avanzar\u00e1 cuando se reanude.",
        "admitted_title": "Es su turno", "admitted_handoff": "Le estamos llevando al sitio\u2026",
        "admitted_token": "Ya puede continuar.",
        "expired_title": "Su lugar ha caducado",
        "expired_body": "La p\u00e1gina estuvo cerrada o sin conexi\u00f3n demasiado tiempo. Puede volver a la "
                        "fila, al final.",
        "rejoin": "Volver a la fila",
        "ended_title": "Su visita ha terminado", "ended_body": "Gracias por su visita.",
        "sold_out_title": "Agotado", "sold_out_body": "Ya no queda nada. Gracias por esperar.",
        "closed_title": "La sala de espera est\u00e1 cerrada", "closed_body": "Ya no se deja pasar a m\u00e1s visitantes.",
        "unavailable_title": "Tenemos un problema",
        "unavailable_body": "No se puede acceder a la sala de espera en este momento. Esta p\u00e1gina lo sigue "
                            "intentando y usted conserva su lugar.",
        "not_found_title": "Aqu\u00ed no hay ninguna sala de espera",
        "not_found_body": "Compruebe la direcci\u00f3n que le dieron.",
    },
    "ja": {
        "page_title": "\u5f85\u5408\u5ba4", "queue_for": "\u5f85\u5408\u5ba4\uff1a",
        "joining_title": "\u5217\u306b\u4e26\u3093\u3067\u3044\u307e\u3059\u2026",
        "joining_body": "\u5c11\u3005\u304a\u5f85\u3061\u304f\u3060\u3055\u3044\u3002",
        "challenge_body": "\u307e\u305a\u3001\u30dc\u30c3\u30c8\u3067\u306f\u306a\u304f\u4eba\u304c"
                          "\u30a2\u30af\u30bb\u30b9\u3057\u3066\u3044\u308b\u3053\u3068\u3092\u78ba\u304b\u3081\u308b"
                          "\u5c0f\u3055\u306a\u8a08\u7b97\u3092\u30d6\u30e9\u30a6\u30b6\u304c\u81ea\u52d5\u3067"
                          "\u89e3\u3044\u3066\u3044\u307e\u3059\u3002\u6570\u79d2\u304b\u304b\u308a\u307e\u3059"
                          "\u304c\u3001\u64cd\u4f5c\u306f\u4e0d\u8981\u3067\u3059\u3002",
        "waiting_title": "\u9806\u756a\u3092\u304a\u5f85\u3061\u3067\u3059",
        "keep_open": "\u3053\u306e\u30da\u30fc\u30b8\u3092\u958b\u3044\u305f\u307e\u307e\u306b\u3057\u3066\u304f"
                     "\u3060\u3055\u3044\u3002\u81ea\u52d5\u3067\u66f4\u65b0\u3055\u308c\u3001\u9806\u756a\u306f"
                     "\u4fdd\u305f\u308c\u307e\u3059\u3002",
        "prequeue_title": "\u307e\u3060\u958b\u59cb\u3057\u3066\u3044\u307e\u305b\u3093",
        "prequeue_body": "\u5217\u306b\u4e26\u3093\u3067\u3044\u307e\u3059\u3002\u958b\u59cb\u6642\u523b\u304b"
                         "\u3089\u9806\u756a\u306b\u3054\u6848\u5185\u3057\u307e\u3059\u3002",
        "starts_at": "\u958b\u59cb\u6642\u523b",
        "your_place": "\u3042\u306a\u305f\u306e\u9806\u756a", "people_ahead": "\u524d\u306b\u3044\u308b\u4eba\u6570",
        "estimated_wait": "\u63a8\u5b9a\u5f85\u3061\u6642\u9593", "now_serving": "\u73fe\u5728\u306e\u6848\u5185\u756a\u53f7",
        "wait_unknown": "\u307e\u3060\u308f\u304b\u308a\u307e\u305b\u3093", "under_a_minute": "1\u5206\u672a\u6e80",
        "minutes": "{m}\u5206", "hours": "{h}\u6642\u9593{m}\u5206",
        "paused_title": "\u73fe\u5728\u4e00\u6642\u505c\u6b62\u4e2d\u3067\u3059",
        "paused_body": "\u4eca\u306f\u3069\u306a\u305f\u3082\u3054\u6848\u5185\u3057\u3066\u3044\u307e\u305b\u3093"
                       "\u3002\u9806\u756a\u306f\u4fdd\u305f\u308c\u3001\u518d\u958b\u5f8c\u306b\u9032\u307f\u307e"
                       "\u3059\u3002",
        "admitted_title": "\u3042\u306a\u305f\u306e\u756a\u3067\u3059",
        "admitted_handoff": "\u30b5\u30a4\u30c8\u3078\u79fb\u52d5\u3057\u3066\u3044\u307e\u3059\u2026",
        "admitted_token": "\u3053\u306e\u307e\u307e\u304a\u9032\u307f\u304f\u3060\u3055\u3044\u3002",
        "expired_title": "\u9806\u756a\u306e\u6709\u52b9\u671f\u9650\u304c\u5207\u308c\u307e\u3057\u305f",
        "expired_body": "\u30da\u30fc\u30b8\u304c\u9577\u304f\u9589\u3058\u3089\u308c\u3066\u3044\u305f\u304b"
                        "\u30aa\u30d5\u30e9\u30a4\u30f3\u3067\u3057\u305f\u3002\u5217\u306e\u6700\u5f8c\u306b"
                        "\u4e26\u3073\u76f4\u3059\u3053\u3068\u304c\u3067\u304d\u307e\u3059\u3002",
        "rejoin": "\u3082\u3046\u4e00\u5ea6\u4e26\u3076",
        "ended_title": "\u3054\u5229\u7528\u306f\u7d42\u4e86\u3057\u307e\u3057\u305f",
        "ended_body": "\u3054\u6765\u8a2a\u3042\u308a\u304c\u3068\u3046\u3054\u3056\u3044\u307e\u3057\u305f\u3002",
        "sold_out_title": "\u58f2\u308a\u5207\u308c",
        "sold_out_body": "\u3059\u3079\u3066\u58f2\u308a\u5207\u308c\u307e\u3057\u305f\u3002\u304a\u5f85\u3061"
                         "\u3044\u305f\u3060\u304d\u3042\u308a\u304c\u3068\u3046\u3054\u3056\u3044\u307e\u3057\u305f\u3002",
        "closed_title": "\u5f85\u5408\u5ba4\u306f\u7d42\u4e86\u3057\u307e\u3057\u305f",
        "closed_body": "\u3053\u308c\u4ee5\u4e0a\u306e\u3054\u6848\u5185\u306f\u3042\u308a\u307e\u305b\u3093\u3002",
        "unavailable_title": "\u554f\u984c\u304c\u767a\u751f\u3057\u3066\u3044\u307e\u3059",
        "unavailable_body": "\u73fe\u5728\u5f85\u5408\u5ba4\u306b\u63a5\u7d9a\u3067\u304d\u307e\u305b\u3093\u3002"
                            "\u3053\u306e\u30da\u30fc\u30b8\u306f\u81ea\u52d5\u3067\u518d\u8a66\u884c\u3057\u3001"
                            "\u9806\u756a\u306f\u4fdd\u305f\u308c\u307e\u3059\u3002",
        "not_found_title": "\u3053\u3053\u306b\u5f85\u5408\u5ba4\u306f\u3042\u308a\u307e\u305b\u3093",
        "not_found_body": "\u6848\u5185\u3055\u308c\u305fURL\u3092\u3054\u78ba\u8a8d\u304f\u3060\u3055\u3044\u3002",
    },
}
assert set(TEXTS) == set(PAGE_LANGUAGES) and all(TEXTS[lang].keys() == TEXTS["en"].keys() for lang in TEXTS)

ALTCHA_WIDGET = "altcha-2.3.0.js"  # static/: the ALTCHA widget's dist/altcha.umd.cjs from npm, unchanged (MIT)
SOLVE_TIMEOUT_MS = 120_000  # a widget that never answers (its script blocked): give up and try again, said on the page

SCRIPT = """<script>
(function () {
  var challenge = __WR_CHALLENGE__;  // the room's joins need a solved bot-protection challenge
  // the room's base URL: this page is .../rooms/{room}/
  var base = location.pathname.replace(/\\/+$/, "");
  var params = new URLSearchParams(location.search);
  var live = document.getElementById("wr-live");
  var handoff = live.getAttribute("data-handoff") === "1";
  var every = parseFloat(live.getAttribute("data-refresh")) * 1000;
  var failures = 0;
  function later(fn) {  // back off while something fails, at most 30 s apart
    setTimeout(fn, failures ? Math.min(30000, 1000 * Math.pow(2, failures)) : Math.max(250, every));
  }
  function localTimes() {  // start times in the visitor's own time zone and language
    Array.prototype.forEach.call(document.querySelectorAll("time[data-wr-local]"), function (t) {
      var d = new Date(t.getAttribute("datetime"));
      t.textContent = d.toLocaleString(document.documentElement.lang, {dateStyle: "medium", timeStyle: "short"});
    });
  }
  function solve() {
    // the ALTCHA widget fetches a challenge and finds its number in web workers; it stays hidden: the page says
    // in words what is happening, in the visitor's language
    return customElements.whenDefined("altcha-widget").then(function () {
      return new Promise(function (resolve, reject) {
        var w = document.createElement("altcha-widget");
        w.setAttribute("challengeurl", base + "/challenge");
        w.setAttribute("hidefooter", ""); w.setAttribute("hidelogo", ""); w.style.display = "none";
        var timer = setTimeout(function () { w.remove(); reject(new Error("timeout")); }, __WR_TIMEOUT__);
        w.addEventListener("statechange", function (e) {
          var s = e.detail && e.detail.state;
          if (s === "verified") { clearTimeout(timer); w.remove(); resolve(e.detail.payload); }
          if (s === "error" || s === "expired") { clearTimeout(timer); w.remove(); reject(new Error(s)); }
        });
        document.body.appendChild(w);
        setTimeout(function () { w.verify(); }, 0);
      });
    });
  }
  function post(payload) {
    return fetch(base + "/join", {method: "POST", headers: {"content-type": "application/json"},
                                  body: JSON.stringify(payload ? {altcha: payload} : {})});
  }
  function join(held) {
    // a newcomer solves first; one who held a place (rejoin: the queue cookie) needs no challenge, so the
    // solve happens only if the room asks for one after all (the cookie had lapsed)
    var sent = challenge && !held ? solve().then(post) : post(null);
    return sent.then(function (r) {
      if (r.status !== 403 || !challenge || !held) { return r; }
      return r.json().then(function (e) { return e.error === "challenge_required" ? solve().then(post) : r; });
    }).then(function (r) { failures = r.ok ? 0 : failures + 1; });
  }
  function refresh() {
    fetch(location.href, {cache: "no-store"})
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("wr-live");
        if (!fresh) { throw new Error("no #wr-live"); }
        if (fresh.innerHTML !== live.innerHTML) { live.innerHTML = fresh.innerHTML; localTimes(); }
        live.setAttribute("data-state", fresh.getAttribute("data-state"));
        next();
      })
      .catch(function () { failures += 1; later(refresh); });
  }
  function handOff() {
    // a real navigation, so the answer's Set-Cookie (HttpOnly, unreadable here) and redirect apply
    var form = document.createElement("form");
    form.method = "POST"; form.action = base + "/enter";
    var input = document.createElement("input");
    input.type = "hidden"; input.name = "return_to"; input.value = params.get("return_to") || params.get("rd") || "";
    form.appendChild(input); document.body.appendChild(form); form.submit();
  }
  function fetchToken() {  // a room without origins: the token is for the site's scripts
    fetch(base + "/token", {method: "POST", headers: {"content-type": "application/json"}, body: "{}"})
      .then(function (r) { return r.json(); })
      .then(function (t) { if (t.access_token) { sessionStorage.setItem("eventweir-waitingroom:" +
        decodeURIComponent(base.split("/").pop()) + ":token", t.access_token); } });
  }
  function next() {
    var state = live.getAttribute("data-state");
    if (state === "joining") {  // a failed join is tried again, later and later: the page says why meanwhile
      return join(false).then(function () { later(refresh); }, function () { failures += 1; later(refresh); });
    }
    failures = state === "unavailable" ? failures + 1 : 0;
    if (state === "admitted") { return handoff ? handOff() : fetchToken(); }
    if (["waiting", "prequeue", "paused", "unavailable"].indexOf(state) >= 0) { later(refresh); }
  }
  document.addEventListener("click", function (e) {  // any element with data-wr-action="rejoin"
    var el = e.target.closest && e.target.closest("[data-wr-action=rejoin]");
    if (el) { e.preventDefault(); el.disabled = true; join(true).then(refresh, refresh); }
  });
  localTimes();
  next();
})();
</script>"""

DEFAULT_TEMPLATE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ room_name }} \u00b7 {{ t.page_title }}</title>
{% if state not in ("not_found", "unavailable") %}
<noscript><meta http-equiv="refresh" content="0; url={{ nojs_url }}"></noscript>{% endif %}
<style>
 *{box-sizing:border-box}
 body{margin:0;min-height:100vh;background:{{ colors.background }};color:{{ colors.text }};
  font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK JP","Hiragino Sans",sans-serif;
  display:flex;align-items:flex-start;justify-content:center;padding:4rem 1rem}
 main{background:{{ colors.card }};width:100%;max-width:34rem;border-radius:1rem;overflow:hidden;
  box-shadow:0 1px 2px rgba(0,0,0,.06),0 8px 24px rgba(0,0,0,.08)}
 header{background:{{ colors.accent }};color:{{ colors.on_accent }};padding:1.25rem 2rem}
 header p{margin:0;font-size:.9rem;letter-spacing:.02em} header h1{margin:.15rem 0 0;font-size:1.5rem;line-height:1.25}
 .body{padding:2rem}
 h2{margin:0 0 .5rem;font-size:1.35rem;line-height:1.3}
 p{margin:0 0 1rem} .muted{color:{{ colors.muted }}}
 .place{display:flex;align-items:baseline;gap:1rem;margin:1.5rem 0;padding:1.25rem 1.5rem;border-radius:.75rem;
  background:{{ colors.background }}}
 .place .n{font-size:3.5rem;font-weight:700;line-height:1;color:{{ colors.accent }};font-variant-numeric:tabular-nums}
 dl{display:grid;grid-template-columns:1fr auto;gap:.6rem 1rem;margin:0 0 1.5rem}
 dt{color:{{ colors.muted }}} dd{margin:0;font-weight:600;text-align:right;font-variant-numeric:tabular-nums}
 .note{padding:1rem 1.25rem;border-radius:.75rem;margin:0 0 1rem}
 .ok{background:{{ colors.ok_bg }};color:{{ colors.ok_text }}} .warn{background:{{ colors.warn_bg }};color:{{ colors.warn_text }}}
 .stop{background:{{ colors.stop_bg }};color:{{ colors.stop_text }}}
 button{font:inherit;font-weight:600;background:{{ colors.accent }};color:{{ colors.on_accent }};border:0;border-radius:.5rem;
  padding:.7rem 1.2rem;cursor:pointer} button:focus-visible{outline:3px solid {{ colors.text }};outline-offset:2px}
 .bar{height:.35rem;background:{{ colors.background }};border-radius:1rem;overflow:hidden;margin-bottom:1.5rem}
 .bar span{display:block;height:100%;width:40%;background:{{ colors.accent }};border-radius:1rem;
  animation:slide 1.6s ease-in-out infinite}
 @keyframes slide{0%{margin-left:-40%}100%{margin-left:100%}}
 @media (prefers-reduced-motion:reduce){.bar span{animation:none;width:100%}}
</style></head>
<body>
<main>
 <header><p>{{ t.queue_for }}</p><h1>{{ room_name }}</h1></header>
 <div class="body">
 <div id="wr-live" aria-live="polite" data-state="{{ state }}" data-refresh="{{ refresh_interval_s }}"
      data-handoff="{{ 1 if handoff else 0 }}">
{% if state in ("waiting", "prequeue", "paused") %}
  <h2>{{ t[state + "_title"] }}</h2>
  {% if state == "paused" %}<p class="note warn">{{ t.paused_body }}</p>{% endif %}
  {% if state == "prequeue" %}<p>{{ t.prequeue_body }}</p>{% endif %}
  <div class="place"><span class="n">{{ position }}</span><span class="muted">{{ t.your_place }}</span></div>
  <dl>
   <dt>{{ t.people_ahead }}</dt><dd>{{ people_ahead }}</dd>
   {% if event_starts_at and state == "prequeue" %}<dt>{{ t.starts_at }}</dt>
   <dd><time datetime="{{ event_starts_at }}" data-wr-local>{{ event_starts_at_text }}</time></dd>{% endif %}
   <dt>{{ t.estimated_wait }}</dt><dd>{{ estimated_wait if wait_time_known else t.wait_unknown }}</dd>
   {% if now_serving is not none %}<dt>{{ t.now_serving }}</dt><dd>{{ now_serving }}</dd>{% endif %}
  </dl>
  {% if state != "paused" %}<div class="bar" aria-hidden="true"><span></span></div>{% endif %}
  <p class="muted">{{ t.keep_open }}</p>
{% elif state == "joining" %}
  <h2>{{ t.joining_title }}</h2><div class="bar" aria-hidden="true"><span></span></div>
  <p class="muted">{{ t.challenge_body if bot_protection else t.joining_body }}</p>
{% elif state == "admitted" %}
  <h2>{{ t.admitted_title }}</h2><p class="note ok">{{ t.admitted_handoff if handoff else t.admitted_token }}</p>
{% elif state == "expired" %}
  <h2>{{ t.expired_title }}</h2><p>{{ t.expired_body }}</p><button type="button" data-wr-action="rejoin">{{ t.rejoin }}</button>
{% elif state == "unavailable" %}
  <h2>{{ t.unavailable_title }}</h2><p class="note warn">{{ t.unavailable_body }}</p>
{% else %}
  <h2>{{ t[state + "_title"] }}</h2><p class="note stop">{{ t[state + "_body"] }}</p>
{% endif %}
 </div>
 </div>
</main>
{{ waitingroom_script }}
</body></html>
"""

# the widget is loaded only where joins need it; relative to the page (.../rooms/{room}/), so under any prefix
_SCRIPTS = {False: Markup(SCRIPT.replace("__WR_CHALLENGE__", "false").replace("__WR_TIMEOUT__", str(SOLVE_TIMEOUT_MS))),
            True: Markup(f'<script src="../../static/{ALTCHA_WIDGET}" async></script>\n'
                         + SCRIPT.replace("__WR_CHALLENGE__", "true").replace("__WR_TIMEOUT__", str(SOLVE_TIMEOUT_MS)))}


@lru_cache(maxsize=1)
def altcha_widget() -> bytes:
    return (Path(__file__).parent / "static" / ALTCHA_WIDGET).read_bytes()


_env = SandboxedEnvironment(autoescape=True)  # sandboxed: a room's template comes through the admin API


@lru_cache(maxsize=64)
def _compile(source: str) -> Template:
    return _env.from_string(source)


def language(accept_language: str, forced: str | None = None) -> str:
    """The room's forced language, else the visitor's most preferred one we have (RFC 9110 q-values), else English."""
    if forced in TEXTS:
        return forced
    best, best_q = "en", 0.0
    for i, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary in TEXTS and q - i * 1e-6 > best_q:  # equal q: the one listed first
            best, best_q = primary, q - i * 1e-6
    return best


def _wait_text(t: dict[str, str], eta_s: float) -> str:
    minutes = math.ceil(eta_s / 60)
    if eta_s < 60:
        return t["under_a_minute"]
    if minutes < 60:
        return t["minutes"].format(m=minutes)
    return t["hours"].format(h=minutes // 60, m=minutes % 60)


def page_state(settings: RoomSettings, status: dict[str, Any] | None, counters: dict[str, Any] | None,
               now_s: float) -> str:
    """What the visitor is told. `status`: their place (None: they have none yet); `counters`: the room's,
    read when they have no place (to say it is sold out or closed instead of joining in vain)."""
    if status is None:
        if settings.phase(now_s) == "closed" or settings.queueing_method == "reject":
            return "closed"
        if settings.inventory is not None and counters is not None and counters["admitted_total"] >= settings.inventory:
            return "sold_out"
        return "joining"
    state = status["state"]
    if state in ("admitted", "active"):
        return "admitted"
    if state in ("completed", "abandoned"):
        return "ended"
    if state != "waiting":
        return "expired"
    if status["sold_out"]:
        return "sold_out"
    if status["phase"] == "closed":
        return "closed"
    if status["paused"]:
        return "paused"
    return "prequeue" if status["phase"] == "pre" else "waiting"


def variables(settings: RoomSettings | None, room_id: str, lang: str, state: str,
              status: dict[str, Any] | None) -> dict[str, Any]:
    """The template's variables (documented in the README's waiting-room section)."""
    t = TEXTS[lang]
    eta = status.get("eta_s") if status and state in ("waiting", "prequeue") else None
    start = settings.schedule_start if settings else None
    start_dt = datetime.fromtimestamp(start, UTC) if start is not None else None
    # the serving counter means "positions up to here are in" only with one class served in join order
    serving_means_something = settings is not None and len(settings.priority_classes) == 1 and \
        settings.queueing_method == "fifo"
    return {
        "lang": lang, "t": t, "colors": PALETTE, "state": state, "room_id": room_id,
        # an unknown room's id is whatever the URL says: never shown, so a crafted link cannot put words on the page
        "room_name": (settings.display_name or room_id) if settings else t["page_title"],
        "position": status["people_ahead"] + 1 if status and state in ("waiting", "prequeue", "paused") else None,
        "people_ahead": status["people_ahead"] if status else None,
        "queue_number": status["position"] if status else None,
        "wait_time_known": eta is not None,
        "estimated_wait_minutes": math.ceil(eta / 60) if eta is not None else None,
        "estimated_wait": _wait_text(t, eta) if eta is not None else None,
        "event_starts_at": start_dt.isoformat().replace("+00:00", "Z") if start_dt else None,
        "event_starts_at_text": start_dt.strftime("%Y-%m-%d %H:%M UTC") if start_dt else None,
        "now_serving": status["serving_counter"] if status and serving_means_something and state == "waiting" else None,
        "queue_is_full": state in ("sold_out", "closed"),
        "handoff": bool(settings and settings.origins),
        "refresh_interval_s": settings.refresh_interval_s if settings else 5.0,
        "bot_protection": bool(settings and settings.bot_protection),
        "waitingroom_script": _SCRIPTS[bool(settings and settings.bot_protection)],
    }


def render(settings: RoomSettings | None, room_id: str, lang: str, state: str, status: dict[str, Any] | None,
           nojs_url: str = "wait") -> bytes:
    """The page; a room's own template, if it fails at render time, gives way to the default page (and a log
    line for the operator) rather than an error page for the visitor. `nojs_url`: where a browser without
    JavaScript goes instead (the server-rendered status page, streams/http/waitingroom/nojs.py)."""
    context = {**variables(settings, room_id, lang, state, status), "nojs_url": nojs_url}
    if settings is not None and settings.page_template:
        try:
            return _compile(settings.page_template).render(context).encode()
        except Exception:
            log.exception("the page_template of room %s failed; the default page was served", room_id)
    return _compile(DEFAULT_TEMPLATE).render(context).encode()
