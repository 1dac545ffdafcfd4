// First render of one page in headless chromium: opens URL RUNS times from the search page (as a
// doctor does), with the session cookie and prints time to first byte, first contentful paint,
// load, the page weight (HTML transferred and decoded, assets) and the rows shown.
// usage: [FROM=/ui/search] [ROWS=li.res] [MIN_ROWS=0] node first_render.mjs URL SESSION_COOKIE [RUNS]
//   FROM      the page the browser is on before each run (its assets are then cached)
//   ROWS      a CSS selector: its matches are counted as the page's rows
//   MIN_ROWS  fail if the page shows fewer rows (a page that shows nothing is not timed)
// Used by tests/bench/web_timeline.sh (a patient's timeline, the defaults) and
// tests/bench/worklist.sh (the reading centre's worklist: ROWS='tr.task[data-task]').
import { chromium } from "playwright-core";

const [url, session, runs = "5"] = process.argv.slice(2);
const from = process.env.FROM || "/ui/search";
const rowSel = process.env.ROWS || "li.res";
const minRows = Number(process.env.MIN_ROWS || 0);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const u = new URL(url);
const rows = [];
// As a doctor does it: the browser is open on the search page (assets cached), then the
// page is opened (a patient's page, the worklist). Each run measures that navigation.
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 768 } });
await ctx.addCookies([{ name: "huren_session", value: session, domain: u.hostname, path: "/", httpOnly: true, sameSite: "Strict", secure: u.protocol === "https:" }]);
const page = await ctx.newPage();
for (let i = 0; i < Number(runs); i++) {
  const before = await page.goto(new URL(from, url).href, { waitUntil: "load" });
  if (!before || before.status() !== 200) {
    await browser.close();
    throw new Error(`${from} answered ${before ? before.status() : "nothing"} at ${page.url()}`);
  }
  const res = await page.goto(url, { waitUntil: "load" });
  // The page must be the one asked for (a refused or expired authorisation answers another
  // status or a redirect to the search page): never time a refusal.
  if (!res || res.status() !== 200 || new URL(page.url()).pathname !== u.pathname) {
    await browser.close();
    throw new Error(`${u.pathname} answered ${res ? res.status() : "nothing"} at ${page.url()}`);
  }
  const row = await page.evaluate(async (rowSel) => {
    const fcp = await new Promise((resolve) => {
      new PerformanceObserver((l) => {
        const e = l.getEntries().find((x) => x.name === "first-contentful-paint");
        if (e) resolve(e.startTime);
      }).observe({ type: "paint", buffered: true });
      setTimeout(() => resolve(null), 2000);
    });
    const n = performance.getEntriesByType("navigation")[0];
    const assets = performance.getEntriesByType("resource").reduce((a, r) => a + (r.transferSize || 0), 0);
    return {
      ttfb_ms: Math.round(n.responseStart - n.startTime),
      fcp_ms: fcp === null ? null : Math.round(fcp),
      load_ms: Math.round(n.loadEventEnd - n.startTime),
      html_transferred: n.transferSize, html_decoded: n.decodedBodySize, assets_transferred: assets,
      rows: document.querySelectorAll(rowSel).length,
    };
  }, rowSel);
  if (row.rows < minRows || row.fcp_ms === null) {
    await browser.close();
    throw new Error(`${u.pathname}: ${row.rows} rows (at least ${minRows} wanted), first contentful paint ${row.fcp_ms}`);
  }
  rows.push(row);
}
await browser.close();
const sorted = (k) => rows.map((r) => r[k]).sort((a, b) => a - b);
const med = (k) => sorted(k)[Math.floor(rows.length / 2)];
const max = (k) => sorted(k)[rows.length - 1];
console.log(JSON.stringify({ runs: rows,
  median: { ttfb_ms: med("ttfb_ms"), fcp_ms: med("fcp_ms"), load_ms: med("load_ms") },
  max: { ttfb_ms: max("ttfb_ms"), fcp_ms: max("fcp_ms"), load_ms: max("load_ms") } }));
