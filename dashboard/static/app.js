// Live updates for the dashboard's pages: one EventSource per page (server-sent events), no framework.
// Apps list: a changed app's row arrives rendered and replaces its row; anything else ("changed") makes the
// page fetch its own main region again (?fragment=1), coalesced. The banner says when the data is stale.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  const banner = document.getElementById("stale");
  const topics = document.body.dataset.topics || "status";
  let timer = null;
  let inflight = false;
  let again = false;

  function bump() {
    live.dataset.version = String(Number(live.dataset.version || "0") + 1);
    live.dataset.updated = new Date().toISOString();
  }

  function setState(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function fragmentUrl() {
    const u = new URL(window.location.href);
    u.searchParams.set("fragment", "1");
    return u.toString();
  }

  function openDetails() {
    return Array.from(live.querySelectorAll("details[open]")).map(function (d) { return d.closest("[data-object],[data-key]"); })
      .filter(Boolean).map(function (el) { return el.dataset.object || el.dataset.key; });
  }

  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    const keep = openDetails();
    let digest = "";
    fetch(fragmentUrl(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { digest = r.headers.get("X-Live-Digest") || ""; return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (digest && digest === live.dataset.digest) { return; }  // nothing visible changed: keep the page as it is
        live.dataset.digest = digest;
        const focused = document.activeElement && document.activeElement.id;
        live.innerHTML = html;
        keep.forEach(function (k) {
          const el = live.querySelector('[data-object="' + CSS.escape(k) + '"] details, [data-key="' + CSS.escape(k) + '"] details');
          if (el) { el.open = true; }
        });
        if (focused) { const f = document.getElementById(focused); if (f) { f.focus(); } }
        relTimes();
        bump();
      })
      .catch(function () { /* the next event or reconnect tries again */ })
      .finally(function () { inflight = false; if (again) { again = false; schedule(); } });
  }

  function schedule() {
    if (timer) { return; }
    timer = setTimeout(function () { timer = null; refresh(); }, 100);
  }

  function replaceRow(key, html) {
    const rows = document.querySelectorAll('#apps-body tr[data-key]');
    let row = null;
    rows.forEach(function (r) { if (r.dataset.key === key) { row = r; } });
    if (!row) { schedule(); return; }  // not on this page (new, or filtered out): let the server decide
    const t = document.createElement("tbody");
    t.innerHTML = html;
    const fresh = t.querySelector("tr");
    if (fresh) { row.replaceWith(fresh); live.dataset.digest = ""; relTimes(); bump(); }
  }

  function relTimes() {
    const now = Date.now();
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      const at = Date.parse(t.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      const s = Math.round((now - at) / 1000);
      const text = s < 0 ? "in " + span(-s) : span(s) + " ago";
      t.title = t.getAttribute("datetime");
      t.dataset.relative = text;
    });
    document.querySelectorAll(".countdown[data-until]").forEach(function (c) {
      const left = Math.round((Date.parse(c.dataset.until) - now) / 1000);
      c.dataset.left = String(left);
      const label = c.querySelector(".left") || c.appendChild(document.createElement("span"));
      label.className = "left";
      label.textContent = left > 0 ? " (" + span(left) + " left)" : " (soak over)";
    });
  }

  function span(s) {
    if (s < 90) { return s + " s"; }
    if (s < 5400) { return Math.round(s / 60) + " min"; }
    if (s < 172800) { return Math.round(s / 3600) + " h"; }
    return Math.round(s / 86400) + " d";
  }

  function connect() {
    const es = new EventSource("/events?topics=" + encodeURIComponent(topics));
    // every open, the first included: what changed between the page's render and its subscription (or while it was
    // disconnected) was announced to nobody — fetch the page's data once; an unchanged digest leaves the page as it is
    es.onopen = function () { setState("open", "● live"); schedule(); };
    es.onerror = function () { setState("reconnecting", "○ reconnecting…"); };
    es.addEventListener("row", function (e) { const d = JSON.parse(e.data); replaceRow(d.key, d.html); });
    es.addEventListener("gone", function (e) {
      const d = JSON.parse(e.data);
      document.querySelectorAll('#apps-body tr[data-key]').forEach(function (r) { if (r.dataset.key === d.key) { r.remove(); live.dataset.digest = ""; bump(); } });
    });
    es.addEventListener("changed", schedule);
    es.addEventListener("status", function (e) {
      const d = JSON.parse(e.data);
      banner.dataset.stale = d.stale ? "true" : "false";
      banner.className = "banner " + (d.stale ? "stale" : "fresh");
      document.getElementById("stale-text").textContent = (d.stale ? "⚠ " : "● ") + d.text;
      const c = document.getElementById("controllers");
      c.textContent = d.controllers && d.controllers.length ? d.controllers.join(" · ") : "no controller heartbeat (a Lease appears with --leader-elect)";
    });
  }

  relTimes();
  setInterval(relTimes, 5000);
  connect();
})();
