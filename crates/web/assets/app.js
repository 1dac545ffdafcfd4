// huren web page: the one script (CSP: script-src 'self'). Everything works without it;
// it makes the pre-order check answer as you type and opens the repeat dialog in one click.
"use strict";
(function () {
  const form = document.getElementById("check-form");
  if (form) {
    const input = form.querySelector("input[name=item]");
    const out = document.getElementById("check-out");
    const known = new Set(Array.from(document.querySelectorAll("#items option"), (o) => o.value));
    let timer = 0;
    let last = "";
    const run = async () => {
      const v = input.value.trim();
      if (!v || v === last) return;
      last = v;
      const r = await fetch(form.action + "?frag=1&item=" + encodeURIComponent(v), {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (r.redirected) { location.href = r.url; return; }
      out.innerHTML = await r.text(); // server-rendered, escaped HTML
    };
    input.addEventListener("input", () => {
      clearTimeout(timer);
      if (known.has(input.value.trim())) timer = setTimeout(run, 120);
    });
    form.addEventListener("submit", (e) => { e.preventDefault(); last = ""; run(); });
  }
  const dlg = document.getElementById("rep-dlg");
  if (dlg && typeof dlg.showModal === "function") {
    const pick = document.getElementById("rep-pick");
    // The link is /ui/p/H/r/REPORT?item=ITEM#decide-full (the no-script fallback).
    document.querySelectorAll("a.rep").forEach((a) => {
      a.addEventListener("click", (e) => {
        const u = new URL(a.href);
        const report = decodeURIComponent(u.pathname.split("/r/")[1] || "");
        const item = u.searchParams.get("item");
        if (!report || !item) return;
        e.preventDefault();
        pick.value = report + "|" + item;
        dlg.showModal();
      });
    });
    document.getElementById("rep-cancel").addEventListener("click", () => dlg.close());
  }
  // Live lists (worklist, sent ECGs): follow the task event stream and fetch the rows again
  // (through the gate, audited) when a change arrives; the stream itself names no patient.
  const live = document.getElementById("live-list");
  if (live && typeof EventSource === "function") {
    const rows = document.getElementById("rows");
    const state = document.getElementById("live");
    let pending = 0;
    const refresh = () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const r = await fetch(live.dataset.frag, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (r.redirected) { location.href = r.url; return; }
        if (r.ok) { rows.innerHTML = await r.text(); tick(); } // server-rendered, escaped HTML
      }, 50);
    };
    const es = new EventSource("/ui/events");
    es.addEventListener("ready", () => { state.textContent = "●"; state.dataset.live = "1"; });
    es.addEventListener("task", refresh);
    es.addEventListener("reset", refresh);
    if (live.dataset.alerts) {
      // The alert page: a new open alert sounds (Web Audio, no file) and the rows refresh.
      const seen = new Set(Array.from(document.querySelectorAll(".alert[data-open='1']"), (e) => e.dataset.alert));
      es.addEventListener("alert", (e) => {
        let d = {};
        try { d = JSON.parse(e.data); } catch (_) { /* ignore */ }
        if (d.state === "open" && !seen.has(d.id)) { seen.add(d.id); beep(); }
        refresh();
      });
    }
    es.onerror = () => { state.textContent = "○"; state.dataset.live = "0"; };
    // A claim that lapses makes no event: look again every minute.
    setInterval(refresh, 60000);
  }
  // A short two-tone alarm (Web Audio; a browser may keep it silent until the page was used).
  function beep() {
    try {
      const ac = new (window.AudioContext || window.webkitAudioContext)();
      [880, 660, 880].forEach((f, i) => {
        const o = ac.createOscillator();
        const g = ac.createGain();
        o.frequency.value = f;
        g.gain.value = 0.2;
        o.connect(g).connect(ac.destination);
        o.start(ac.currentTime + i * 0.25);
        o.stop(ac.currentTime + i * 0.25 + 0.2);
      });
      document.body.dataset.beeped = String(Number(document.body.dataset.beeped || 0) + 1);
    } catch (_) { /* no audio */ }
  }
  // Countdowns to each task's due time.
  const tick = () => {
    const now = Date.now();
    document.querySelectorAll(".countdown[data-due]").forEach((el) => {
      const left = Math.round((Date.parse(el.dataset.due) - now) / 1000);
      const a = Math.abs(left);
      const mmss = Math.floor(a / 60) + ":" + String(a % 60).padStart(2, "0");
      el.textContent = left < 0 ? el.dataset.overdue + " " + mmss : mmss;
      el.classList.toggle("overdue", left < 0);
      const row = el.closest("tr.task");
      if (row) row.classList.toggle("overdue", left < 0);
    });
  };
  if (document.querySelector(".countdown")) { tick(); setInterval(tick, 1000); }
  // While the reading page with the sign form is open, renew the claim every 5 minutes (the
  // holder claiming again is the renewal), so a long read does not lapse.
  const signForm = document.getElementById("sign-form");
  if (signForm) {
    const csrf = signForm.querySelector("input[name=csrf]").value;
    const claimUrl = signForm.action.replace(/\/sign$/, "/claim");
    setInterval(() => {
      fetch(claimUrl, {
        method: "POST", credentials: "same-origin", redirect: "manual",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "csrf=" + encodeURIComponent(csrf),
      });
    }, 300000);
  }
  // Statement templates tick their statements.
  document.querySelectorAll("button.template").forEach((b) => {
    b.addEventListener("click", () => {
      const codes = new Set(b.dataset.statements.split(","));
      document.querySelectorAll("fieldset.catalogue input[type=checkbox]").forEach((c) => {
        if (codes.has(c.dataset.code)) c.checked = true;
      });
    });
  });
})();
