// Browser test of huren's web page (run by tests/cli/web.rs against `huren serve --demo`):
// headless Debian chromium driven by playwright-core. Prints one JSON line with what it did,
// which the Rust side checks against the audit log. Exits non-zero on the first failure.
//
// env: HUREN_URL, HUREN_MLLP, DEMO_TOKEN, COMMISSION_TOKEN, PRIVACY_TOKEN,
//      SHOTS (screenshot directory),
//      DEMO_PATIENT_AUTHORIZATION ("KIND CODE", the consent `serve --demo` recorded),
//      CHROMIUM (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";

const base = process.env.HUREN_URL;
const shots = process.env.SHOTS || "target/web-shots";
const nid = "310120195805201229";
fs.mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) {
    console.error("FAILED: " + what);
    process.exitCode = 1;
    throw new Error(what);
  }
  console.error("ok: " + what);
}

// One ORU^R01 over MLLP; resolves with the ACK.
function mllpSend(addr, msg) {
  const [host, port] = addr.split(":");
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port: Number(port) }, () => {
      s.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(msg, "utf8"), Buffer.from([0x1c, 0x0d])]));
    });
    let buf = Buffer.alloc(0);
    s.setTimeout(10000, () => { s.destroy(); reject(new Error("MLLP timeout")); });
    s.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.includes(Buffer.from([0x1c, 0x0d]))) { s.end(); resolve(buf.toString("utf8")); }
    });
    s.on("error", reject);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { patient_views: 0, decisions: 0, screenshots: [] };
try {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 }, locale: "zh-CN" });
  const page = await ctx.newPage();
  const viewRe = /\/ui\/p\/[0-9a-f]+(\/check|\/r\/[^/]+)?(\?.*)?$/;
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (r.status() === 200 && r.request().method() === "GET" && viewRe.test(u.pathname + u.search)) out.patient_views++;
  });
  let alerted = false;
  page.on("dialog", async (d) => { alerted = true; await d.dismiss(); });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  const shot = async (name) => {
    const f = path.join(shots, name + ".png");
    await page.screenshot({ path: f, fullPage: true });
    out.screenshots.push(f);
  };

  // A wrong token is refused.
  await page.goto(base + "/");
  await page.fill("#token", "not-a-token");
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(await page.locator("p.error").isVisible(), "wrong token: error shown");
  check((await page.locator("p.error").textContent()).includes("令牌无效"), "wrong token: message in Chinese");
  check(page.url().endsWith("/ui/login"), "wrong token: stays on sign-in");
  const r401 = await page.request.get(base + "/ui/search", { maxRedirects: 0 });
  check(r401.status() === 303, "no session: search redirects to sign-in");

  pageErrors.length = 0; // the refused sign-in's 401 is expected
  // Sign in with the keyboard only (the token field has focus on load).
  await page.goto(base + "/");
  // Wait for the autofocus to land (typing earlier, under load, lost keystrokes).
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "token", null, { timeout: 10000 });
  await page.keyboard.type(process.env.DEMO_TOKEN);
  await Promise.all([page.waitForNavigation(), page.keyboard.press("Enter")]);
  check(page.url().endsWith("/ui/search"), "signed in: search page");
  const cookies = await ctx.cookies();
  const sess = cookies.find((c) => c.name === "huren_session");
  check(sess && sess.httpOnly && sess.sameSite === "Strict", "session cookie is HttpOnly and SameSite=Strict");

  // A state-changing request without the CSRF token is refused.
  const forged = await page.request.post(base + "/ui/search", { form: { by: "national", national_id: nid, auth_code: "1", csrf: "0".repeat(64) }, maxRedirects: 0 });
  check(forged.status() === 403, "search without the CSRF token: 403");

  // Find the demo patient.
  await page.check("#by-nid");
  await page.fill("#national_id", nid);
  const [authKind, authCode] = (process.env.DEMO_PATIENT_AUTHORIZATION || "").split(" ");
  await page.selectOption("#auth_kind", authKind);
  await page.fill("#auth_code", authCode);
  const t0 = Date.now();
  await Promise.all([page.waitForNavigation(), page.click("#search-go")]);
  await page.waitForSelector("ol.timeline li.res");
  out.timeline_ms = Date.now() - t0;
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    const res = performance.getEntriesByType("resource").reduce((a, r) => a + (r.transferSize || 0), 0);
    return { ttfb: n.responseStart - n.requestStart, fcp: paint ? paint.startTime : null, doc: n.transferSize, decoded: n.decodedBodySize, resources: res };
  });
  out.timeline = nav;
  const timelineUrl = page.url();
  check(/\/ui\/p\/[0-9a-f]{16}$/.test(timelineUrl), "patient URL carries a handle, not the national ID");
  check(!timelineUrl.includes(nid), "national ID not in the URL");
  check(await page.locator(".patient h1").textContent().then((t) => t.includes("李秀英")), "patient name shown");
  check(await page.locator("li.res .badge.ok").first().isVisible(), "a 可互认 badge is visible");
  check((await page.locator("li.res .badge.ok").first().textContent()).includes("可互认"), "badge has text, not only colour");
  check((await page.locator("li.res .badge.ok .icon").first().textContent()).trim() === "✔", "badge has an icon");
  check(await page.locator("li.res .badge.ref").first().isVisible(), "a 仅供参考 badge is visible");
  check(await page.getByText("已超过互认时限").first().isVisible(), "expired result explained");
  check(await page.getByText("出具机构无该项目的质控合格证明").first().isVisible(), "no-QC result explained");
  check(await page.getByText("全国HR").first().isVisible(), "HR label shown");
  check(await page.locator(".crit-inline").first().isVisible(), "critical ECG flagged in the timeline");
  await shot("timeline");

  // Pre-order check: recognisable potassium, then an item with no prior result.
  await page.fill("#check-item", "FX-LAB-K 钾");
  await page.waitForSelector("#check-result.yes");
  check((await page.locator("#check-result").textContent()).includes("有可互认结果"), "check: K is recognisable");
  await shot("check");
  await page.fill("#check-item", "FX-LAB-CBC 血常规");
  await page.waitForSelector("#check-result.no");
  check((await page.locator("#check-result").textContent()).includes("无该项目的既往结果"), "check: no prior CBC");

  // Lab report with the potassium trend across institutions.
  await Promise.all([page.waitForNavigation(), page.locator("li.res.lv-ok a.item", { hasText: "钾" }).first().click()]);
  await page.waitForSelector("figure.chart svg.trend");
  const pts = await page.locator("figure.chart svg.trend .pt").count();
  check(pts >= 3, `trend chart has ${pts} points (≥ 3)`);
  check(await page.locator("figure.chart svg.trend .legend").count() >= 2, "trend legend names two institutions");
  check(await page.locator("table.obs").isVisible(), "observation table shown");
  await shot("lab-trend");

  // ECG: critical banner, measurements, trace image.
  await page.goto(timelineUrl);
  await Promise.all([page.waitForNavigation(), page.locator("li.res", { has: page.locator(".crit-inline") }).locator("a.item").first().click()]);
  check(await page.locator("#critical").isVisible(), "critical ECG banner");
  check((await page.locator("#critical").textContent()).includes("急性下壁心肌梗死"), "critical statement shown");
  await page.waitForFunction(() => { const i = document.getElementById("ecg-trace"); return i && i.complete && i.naturalWidth > 0; });
  check(true, "12-lead trace image loaded");
  await shot("ecg");

  // Study: series table and the radiologist's SR findings.
  await page.goto(timelineUrl + "?kind=imaging");
  await Promise.all([page.waitForNavigation(), page.locator("li.res a.item", { hasText: "胸部CT" }).first().click()]);
  check(await page.locator("#study").isVisible(), "study view");
  check(await page.locator("#series tbody tr").count() >= 1, "series listed");
  check((await page.locator("#sr").textContent()).includes("磨玻璃结节"), "SR findings shown");
  await page.waitForFunction(() => {
    const imgs = Array.from(document.querySelectorAll("#previews img"));
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  });
  check(true, "study preview images loaded");
  const pv = await page.evaluate(() => {
    const i = document.querySelector("#previews img");
    return { w: i.naturalWidth, h: i.naturalHeight, n: document.querySelectorAll("#previews img").length };
  });
  check(pv.w > 0 && pv.h > 0, `preview ${pv.n} image(s), first ${pv.w}×${pv.h}`);
  await shot("study");

  // Decisions: accept one recognisable result, then repeat another with E1 (two clicks).
  await page.goto(timelineUrl);
  await Promise.all([page.waitForNavigation(), page.locator("li.res.lv-ok button.accept").first().click()]);
  check(await page.locator("#done").isVisible(), "accept recorded");
  out.decisions++;
  await page.locator("li.res.lv-ok a.rep").nth(1).click();
  check(await page.locator("#rep-dlg").isVisible(), "repeat dialog opened");
  await Promise.all([page.waitForNavigation(), page.locator("#rep-dlg button[value=E1]").click()]);
  check((await page.locator("#done").textContent()).includes("重新检查"), "repeat recorded");
  out.decisions++;
  await shot("decided");

  // XSS: a result whose value is a script renders literally.
  const ts = new Date(Date.now() + 8 * 3600 * 1000).toISOString().replace(/[-:T]/g, "").slice(0, 14);
  const msg = [
    `MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|${ts}||ORU^R01^ORU_R01|XSS-${ts}|P|2.5.1|||||CHN|UNICODE UTF-8`,
    `PID|1||ZX0098765^^^FX-ZX^MR~${nid}^^^NNCHN^NI||李^秀英||19580520|F`,
    (() => { const f = Array(26).fill(""); f[0] = "OBR"; f[1] = "1"; f[2] = "X1"; f[3] = "X1L"; f[4] = "NOTE^备注^L"; f[7] = ts; f[22] = ts; f[24] = "CH"; f[25] = "F"; return f.join("|"); })(),
    `OBX|1|ST|NOTE^备注^L||<script>alert(1)</script><img src=x onerror=alert(2)>||||||F`,
  ].join("\r") + "\r";
  const ack = await mllpSend(process.env.HUREN_MLLP, msg);
  check(ack.includes("MSA|AA"), "XSS message acknowledged");
  await page.goto(timelineUrl);
  const bodyText = await page.locator("body").innerText();
  check(bodyText.includes("<script>alert(1)</script>"), "script value shown literally");
  check(await page.locator("main script").count() === 0, "no script element injected");
  check(await page.locator("main img[src=x]").count() === 0, "no img element injected");
  await page.waitForTimeout(300);
  check(!alerted, "no alert fired");
  await shot("xss");

  // Tablet width: the timeline reflows without horizontal scrolling.
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.goto(timelineUrl);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, `no horizontal overflow at 768 px (${overflow})`);
  await shot("tablet");
  await page.setViewportSize({ width: 1366, height: 768 });

  // Break-glass: refused for an outpatient encounter (audited), allowed in an emergency.
  check(pageErrors.length === 0, "no page errors so far: " + pageErrors.join("; "));
  await page.goto(base + "/ui/search");
  await page.fill("#national_id", nid);
  await page.fill("#break_glass", "胸痛急诊，患者意识不清");
  await Promise.all([page.waitForNavigation(), page.click("#search-go")]);
  check(await page.locator("p.error").isVisible(), "break-glass refused for an outpatient encounter");
  pageErrors.length = 0; // the refusal page's 403 is expected
  await page.goto(base + "/ui/search");
  await page.fill("#national_id", nid);
  await page.fill("#break_glass", "胸痛急诊，患者意识不清");
  await page.selectOption("#encounter", "emergency");
  await Promise.all([page.waitForNavigation(), page.click("#search-go")]);
  check(await page.locator("p.banner.warn").isVisible(), "break-glass banner in an emergency");
  check(await page.locator("li.res").count() > 0, "break-glass shows the results");
  out.break_glass_views = 1;

  // English switch.
  await Promise.all([page.waitForNavigation(), page.click("a[href^='/ui/lang/en']")]);
  check((await page.locator("li.res .badge.ok").first().textContent()).includes("Recognised"), "English labels");
  await Promise.all([page.waitForNavigation(), page.click("a[href^='/ui/lang/zh']")]);

  // Keyboard: the search form is reachable and labelled.
  await page.goto(base + "/ui/search");
  const unlabelled = await page.evaluate(() => Array.from(document.querySelectorAll("input:not([type=hidden]),select")).filter((e) => !e.labels || e.labels.length === 0).map((e) => e.name));
  check(unlabelled.length === 0, "every form control is labelled: " + unlabelled.join(","));

  // Statistics as the health commission.
  await page.click("header form button");
  await page.waitForURL(base + "/");
  await page.fill("#token", process.env.COMMISSION_TOKEN);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(page.url().includes("/ui/stats"), "commission lands on statistics");
  const total = await page.locator("#stats-total td").allTextContents();
  check(Number(total[3]) >= 1 && Number(total[5]) >= 1, `statistics count the decisions: ${total.join(" ")}`);
  await shot("stats");

  // Identity review as the privacy officer: a message claims another national ID for the
  // demo patient's local ID; the officer keeps the existing link, with a reason.
  const claim = [
    `MSH|^~\\&|LIS|FX-ZX|HUREN|FX-YLT|${ts}||ORU^R01^ORU_R01|IDC-${ts}|P|2.5.1|||||CHN|UNICODE UTF-8`,
    `PID|1||ZX0098765^^^FX-ZX^MR~310120195805201239^^^NNCHN^NI||李^秀英||19580520|F`,
    (() => { const f = Array(26).fill(""); f[0] = "OBR"; f[1] = "1"; f[2] = "IDC1"; f[3] = "IDC1L"; f[4] = "NOTE^备注^L"; f[7] = ts; f[22] = ts; f[24] = "CH"; f[25] = "F"; return f.join("|"); })(),
    `OBX|1|ST|NOTE^备注^L||identity-claim-note||||||F`,
  ].join("\r") + "\r";
  check((await mllpSend(process.env.HUREN_MLLP, claim)).includes("MSA|AA"), "contradicting claim acknowledged");
  await page.click("header form button");
  await page.waitForURL(base + "/");
  await page.fill("#token", process.env.PRIVACY_TOKEN);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  await Promise.all([page.waitForNavigation(), page.click("#nav-identity")]);
  const item = page.locator("article.review", { hasText: `IDC-${ts}` });
  check(await item.isVisible(), "identity review item listed");
  check((await item.locator("td.local").textContent()).includes("FX-ZX:ZX0098765"), "the local ID claimed is shown");
  check(!(await page.locator("main").innerText()).includes("identity-claim-note"), "no clinical content on the review page");
  await shot("identity");
  await item.locator("input[value=keep]").check();
  await item.locator("input.reason").fill("与患者身份证核对，原关联正确");
  await Promise.all([page.waitForNavigation(), item.locator("button[type=submit]").click()]);
  check(await page.locator("#done").isVisible(), "identity decision recorded");
  check(await page.locator("article.review", { hasText: `IDC-${ts}` }).count() === 0, "the decided item is gone");
  out.identity_reviews = 1;


  check(pageErrors.length === 0, "no page errors: " + pageErrors.join("; "));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
