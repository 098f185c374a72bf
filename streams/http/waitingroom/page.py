"""The waiting page: joins (or resumes) the queue, polls the status, shows position and ETA, and once
admitted hands the visitor off to the site (a form post to .../enter, which sets the access cookie and
redirects to `return_to`), or, in a room without origins, fetches the access token. Plain HTML +
fetch(), no build step.

The visitor's place is the queue cookie join sets (HttpOnly, on the room's path): every poll, the token
fetch and the hand-off carry it by themselves, so the page keeps no id or token of its own and a reload
resumes the same place. A poll answered 401 (no cookie, or one that no longer verifies) or 404 (the place
is gone) joins again."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Waiting room</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
 .big{font-size:3rem;font-weight:700;margin:.2rem 0} .muted{color:#666} dt{font-weight:600}
 #admitted{display:none;background:#e6f6e6;padding:1rem;border-radius:.5rem}
</style></head>
<body data-handoff="__HANDOFF__">
<h1>You are in the queue for <span id="room"></span></h1>
<p class="muted">Keep this page open: it refreshes by itself and you keep your place while it does.</p>
<p>Your position</p><p class="big" id="position">&hellip;</p>
<dl>
 <dt>People ahead of you</dt><dd id="ahead">&hellip;</dd>
 <dt>Estimated wait</dt><dd id="eta">&hellip;</dd>
 <dt>Now serving</dt><dd id="serving">&hellip;</dd>
 <dt>Status</dt><dd id="state">joining</dd>
</dl>
<div id="admitted"><strong>It is your turn.</strong> <span id="token-state"></span></div>
<script>
(function () {
  var base = location.pathname.replace(/\\/+$/, "");
  var room = decodeURIComponent(base.split("/").pop());
  var key = "eventweir-waitingroom:" + room;
  var params = new URLSearchParams(location.search);
  var $ = function (id) { return document.getElementById(id); };
  $("room").textContent = room;
  function fmtEta(s) {
    if (s === null || s === undefined) return "unknown";
    if (s < 60) return Math.ceil(s) + " s";
    return Math.ceil(s / 60) + " min";
  }
  function show(s) {
    $("position").textContent = s.position;
    $("ahead").textContent = s.people_ahead;
    $("eta").textContent = s.state === "waiting" ? fmtEta(s.eta_s) : "-";
    $("serving").textContent = s.serving_counter;
    $("state").textContent = s.sold_out ? "sold out" : (s.paused ? "paused" : s.state);
  }
  function join() {
    return fetch(base + "/join", {method: "POST", headers: {"content-type": "application/json"}, body: "{}"})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (!j.request_id) { $("state").textContent = j.message || "could not join"; throw new Error("join"); }
      });
  }
  function handOff() {
    // a real navigation, so the answer's Set-Cookie (HttpOnly, unreadable here) and redirect apply
    var form = document.createElement("form");
    form.method = "POST"; form.action = base + "/enter";
    var fields = {return_to: params.get("return_to") || params.get("rd") || ""};
    Object.keys(fields).forEach(function (name) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = fields[name]; form.appendChild(input);
    });
    document.body.appendChild(form);
    $("token-state").textContent = "Taking you to the site\u2026";
    form.submit();
  }
  function admitted() {
    $("admitted").style.display = "block";
    document.querySelector("h1").textContent = "It is your turn";
    if (document.body.dataset.handoff === "1") { handOff(); return; }
    return fetch(base + "/token", {method: "POST", headers: {"content-type": "application/json"}, body: "{}"})
      .then(function (r) { return r.json(); })
      .then(function (t) {
        if (t.access_token) { sessionStorage.setItem(key + ":token", t.access_token); $("token-state").textContent = "Access granted."; }
        else { $("token-state").textContent = t.message || ""; }
      });
  }
  function poll() {
    fetch(base + "/status")
      .then(function (r) { return r.json().then(function (s) { return [r.status, s]; }); })
      .then(function (pair) {
        var s = pair[1];
        if (pair[0] === 401 || pair[0] === 404) { return join().then(poll); }
        if (pair[0] !== 200) { $("state").textContent = s.message || "error"; setTimeout(poll, 5000); return; }
        show(s);
        if (s.state === "admitted" || s.state === "active") { return admitted(); }
        if (s.state === "waiting") { setTimeout(poll, Math.max(250, s.refresh_interval_s * 1000)); }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
</script>
</body></html>
"""  # noqa: E501


def render_page(*, handoff: bool) -> bytes:
    """The page for a room; `handoff`: the room has origins, so admission sends the visitor there."""
    return _PAGES[handoff]


_PAGES = {flag: PAGE.replace("__HANDOFF__", "1" if flag else "0").encode() for flag in (False, True)}
