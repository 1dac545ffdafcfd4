// Browser test of the reading centre (issue 17), run by tests/cli/reading_web.rs: the ECG
// centre's reader has the worklist open and the community doctor the page of the ECGs their
// centre sent; the community centre uploads an ECG; it appears on the reader's worklist
// within a second without a reload; the reader claims it, reads it beside the patient's
// previous ECG, picks statements and signs; the community doctor's page shows the signed
// diagnosis without a reload. Prints one JSON line; exits non-zero on the first failure.
//
// env: HUREN_URL, READER_TOKEN, COMMUNITY_TOKEN (a clinician of the sending centre, who also
//      uploads), ECG_FILE (the ECG to upload), SHOTS, CHROMIUM (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const base = process.env.HUREN_URL;
const shots = process.env.SHOTS || "target/web-shots";
fs.mkdirSync(shots, { recursive: true });

function check(cond, what) {
  if (!cond) {
    console.error("FAILED: " + what);
    process.exitCode = 1;
    throw new Error(what);
  }
  console.error("ok: " + what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { screenshots: [] };
const pageErrors = [];

async function signedIn(token, lands) {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: "zh-CN" });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(base + "/");
  await page.fill("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  await page.goto(base + lands);
  // The page follows the event stream once it says "ready".
  await page.waitForSelector("#live[data-live='1']", { timeout: 10000 });
  return page;
}

const shot = async (page, name) => {
  const f = path.join(shots, name + ".png");
  await page.screenshot({ path: f, fullPage: true });
  out.screenshots.push(f);
};

try {
  const reader = await signedIn(process.env.READER_TOKEN, "/ui/worklist");
  const community = await signedIn(process.env.COMMUNITY_TOKEN, "/ui/sent");
  check(true, "reader on the worklist and community doctor on the sent page, both live");
  const before = new Set(await reader.locator("tr.task").evaluateAll((rows) => rows.map((r) => r.dataset.task)));

  // The community centre's cart uploads an ECG.
  const up = await fetch(base + "/api/v1/ecg", {
    method: "POST",
    headers: { Authorization: "Bearer " + process.env.COMMUNITY_TOKEN, "Content-Type": "application/xml" },
    body: fs.readFileSync(process.env.ECG_FILE),
  });
  const t0 = Date.now();
  check(up.ok, "ECG uploaded: " + up.status);
  const uploaded = await up.json();
  // Within a second it is on the reader's worklist, without a reload.
  const newRow = await reader.waitForFunction(
    (seen) => Array.from(document.querySelectorAll("tr.task")).map((r) => r.dataset.task).find((id) => !seen.includes(id)),
    [...before],
    { timeout: 1000, polling: 20 },
  );
  out.appeared_ms = Date.now() - t0;
  const task = await newRow.jsonValue();
  check(out.appeared_ms <= 1000, `new task on the worklist after ${out.appeared_ms} ms`);
  out.task = task;
  const row = reader.locator(`tr.task[data-task="${task}"]`);
  check((await row.textContent()).includes("FX-SQ01"), "the row names the sending centre");
  check(await row.locator(".countdown").count() === 1, "the row counts down to its due time");
  await shot(reader, "reading-worklist");
  // The community doctor's page shows it waiting.
  await community.waitForSelector(`tr.task[data-task="${task}"][data-state="scheduled"]`, { timeout: 2000 });
  check(true, "the sender's page shows the ECG waiting");

  // The reader claims it and reads it beside the patient's previous ECG.
  await Promise.all([reader.waitForNavigation(), row.locator("button.claim").click()]);
  check(reader.url().includes(`/ui/task/${task}`), "claim opens the reading page");
  for (const id of ["#trace-current img", "#trace-prior img"]) {
    await reader.waitForFunction((sel) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; }, id, { timeout: 10000 });
  }
  check(true, "the trace and the previous ECG's trace are shown side by side");
  check(await reader.locator("#measurements tbody tr").count() >= 3, "measurements, this and previous");
  check(await reader.locator("#machine li").count() >= 1, "the cart's statements");
  // The sender's page says who reads it.
  await community.waitForFunction((id) => {
    const r = document.querySelector(`tr.task[data-task="${id}"]`);
    return r && r.dataset.state === "in_progress" && r.textContent.includes("dr.zx");
  }, task, { timeout: 2000 });
  check(true, "the sender's page shows who is reading it");
  // A template ticks its statements; the reader adds free text and signs.
  await reader.locator("button.template", { hasText: "急性下壁STEMI" }).click();
  check(await reader.locator("input[data-code='AMI-INF']").isChecked(), "the template ticked 急性下壁心肌梗死");
  await reader.fill("textarea[name=text]", "建议立即转诊胸痛中心");
  await shot(reader, "reading-task");
  await Promise.all([reader.waitForNavigation(), reader.click("#sign-button")]);
  check(reader.url().endsWith("/ui/worklist"), "signing returns to the worklist");
  check(await reader.locator(`tr.task[data-task="${task}"]`).count() === 0, "the signed task left the worklist");

  // The community doctor sees the signed diagnosis without a reload.
  await community.waitForFunction((id) => {
    const r = document.querySelector(`tr.task[data-task="${id}"]`);
    return r && r.dataset.state === "completed" && r.querySelector(".diagnosis").textContent.includes("急性下壁心肌梗死");
  }, task, { timeout: 2000 });
  const diag = await community.locator(`tr.task[data-task="${task}"] .diagnosis`).textContent();
  check(diag.includes("建议立即转诊胸痛中心"), "the diagnosis carries the reader's text: " + diag);
  await shot(community, "reading-sent");
  out.report = uploaded.report;

  // The centre head (the reader here) sees the workload and edits the roster.
  await reader.goto(base + "/ui/centre/fx-ecg");
  const signed = Number((await reader.locator("#workload-all tbody td").first().textContent()).trim());
  check(signed >= 2, `the workload counts the signed ECGs: ${signed}`);
  check((await reader.locator("#workload-readers").textContent()).includes("dr.zx"), "per reader");
  const readers = reader.locator("#roster-form input[name=reader]");
  const n = await readers.count();
  check(pageErrors.length === 0, "no page errors so far: " + pageErrors.join("; "));
  // A half-given window is refused with the reason, and nothing changes.
  await readers.nth(n - 1).fill("dr.sq01");
  await reader.locator("#roster-form input[name=from]").nth(n - 1).fill("08:00");
  await Promise.all([reader.waitForNavigation(), reader.click("#roster-save")]);
  check(await reader.locator("#roster-error").isVisible(), "a half-given window is refused: " + await reader.locator("#roster-error").textContent());
  check(!(await reader.locator("#on-duty").textContent()).includes("dr.sq01"), "nothing changed");
  pageErrors.length = 0; // the refused edit's 400 is expected
  const again = reader.locator("#roster-form input[name=reader]");
  const m = await again.count();
  await again.nth(m - 1).fill("dr.sq01");
  await Promise.all([reader.waitForNavigation(), reader.click("#roster-save")]);
  check(await reader.locator("#done").isVisible(), "roster saved");
  check((await reader.locator("#on-duty").textContent()).includes("dr.sq01"), "dr.sq01 on duty now");
  await shot(reader, "reading-centre");
  check(pageErrors.length === 0, "no page errors: " + pageErrors.join("; "));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
