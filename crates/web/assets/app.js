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
})();
