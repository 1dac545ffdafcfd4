// First render of one patient page in headless chromium (tests/bench/web_timeline.sh):
// opens URL RUNS times from the search page (as a doctor does), with the session cookie and prints time to first byte, first
// contentful paint, load, and the page weight (HTML transferred and decoded, assets).
// usage: node first_render.mjs URL SESSION_COOKIE [RUNS]
import { chromium } from "playwright-core";

const [url, session, runs = "5"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const u = new URL(url);
const rows = [];
// As a doctor does it: the browser is open on the search page (assets cached), then the
// patient's page is opened. Each run measures that navigation.
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 768 } });
await ctx.addCookies([{ name: "huren_session", value: session, domain: u.hostname, path: "/", httpOnly: true, sameSite: "Strict", secure: u.protocol === "https:" }]);
const page = await ctx.newPage();
for (let i = 0; i < Number(runs); i++) {
  await page.goto(new URL("/ui/search", url).href, { waitUntil: "load" });
  const res = await page.goto(url, { waitUntil: "load" });
  // The patient page must be the patient's (a refused or expired authorisation answers another
  // status or a redirect to the search page): never time a refusal.
  if (!res || res.status() !== 200 || new URL(page.url()).pathname !== u.pathname) {
    await browser.close();
    throw new Error(`patient page answered ${res ? res.status() : "nothing"} at ${page.url()}`);
  }
  rows.push(await page.evaluate(async () => {
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
      results: document.querySelectorAll("li.res").length,
    };
  }));
}
await browser.close();
const med = (k) => rows.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(rows.length / 2)];
console.log(JSON.stringify({ runs: rows, median: { ttfb_ms: med("ttfb_ms"), fcp_ms: med("fcp_ms"), load_ms: med("load_ms") } }));
