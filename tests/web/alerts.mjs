// Browser test of the STEMI channel (issue 18), run by tests/cli/alerts.rs: the on-duty
// cardiologist and the community doctor both have /ui/alerts open; the community centre
// uploads a STEMI ECG; within a second the alert is on the cardiologist's page, with a sound,
// the 12-lead trace, the patient, the sending centre with its phone and the group's phone; the community
// page says "waiting for the cardiologist"; the cardiologist answers "STEMI confirmed:
// transfer now" with a note; the community page shows the decision without a reload.
// env: HUREN_URL, CARDIO_TOKEN, COMMUNITY_TOKEN, ECG_FILE, SHOTS, CHROMIUM
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const base = process.env.HUREN_URL;
const shots = process.env.SHOTS || "target/web-shots";
fs.mkdirSync(shots, { recursive: true });
function check(cond, what) {
  if (!cond) { console.error("FAILED: " + what); process.exitCode = 1; throw new Error(what); }
  console.error("ok: " + what);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required"],
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
  await page.waitForSelector("#live[data-live='1']", { timeout: 10000 });
  return page;
}
const shot = async (page, name) => {
  const f = path.join(shots, name + ".png");
  await page.screenshot({ path: f, fullPage: true });
  out.screenshots.push(f);
};
try {
  const cardio = await signedIn(process.env.CARDIO_TOKEN, "/ui/alerts");
  const community = await signedIn(process.env.COMMUNITY_TOKEN, "/ui/alerts");
  check(await cardio.locator(".alert").count() === 0, "no alert yet");
  const up = await fetch(base + "/api/v1/ecg", {
    method: "POST",
    headers: { Authorization: "Bearer " + process.env.COMMUNITY_TOKEN, "Content-Type": "application/xml" },
    body: fs.readFileSync(process.env.ECG_FILE),
  });
  const t0 = Date.now();
  check(up.ok, "STEMI ECG uploaded: " + up.status);
  await cardio.waitForSelector(".alert[data-open='1']", { timeout: 1000 });
  out.appeared_ms = Date.now() - t0;
  check(out.appeared_ms <= 1000, `alert on the cardiologist's page after ${out.appeared_ms} ms`);
  const card = cardio.locator(".alert[data-open='1']").first();
  const text = await card.textContent();
  check(text.includes("急性下壁心肌梗死"), "the alert says what the cart saw");
  check(text.includes("FX-SQ01") && text.includes("021-5742-0000"), "sending centre and phone");
  check(text.includes("021-5712-0001"), "the sending centre's phone, to call back");
  await cardio.waitForFunction(() => Number(document.body.dataset.beeped || 0) >= 1, null, { timeout: 2000 });
  check(true, "a sound was played");
  await cardio.waitForFunction(() => { const i = document.querySelector(".alert-trace"); return i && i.complete && i.naturalWidth > 0; }, null, { timeout: 10000 });
  check(true, "the 12-lead trace is shown");
  await community.waitForSelector(".alert .waiting", { timeout: 2000 });
  check(true, "the community page says: waiting for the cardiologist");
  await shot(cardio, "alert-cardiologist");
  await card.locator("input[name=note]").fill("立即转运，导管室已启动");
  await Promise.all([cardio.waitForNavigation(), card.locator("button.stemi_transfer").click()]);
  check(cardio.url().includes("/ui/alerts"), "answered");
  await community.waitForFunction(() => {
    const d = document.querySelector(".alert .decision");
    return d && d.textContent.includes("确认STEMI");
  }, null, { timeout: 2000 });
  const note = await community.locator(".alert .note").first().textContent();
  check(note.includes("导管室已启动"), "the community page shows the decision and the note");
  await shot(community, "alert-community");
  check(pageErrors.length === 0, "no page errors: " + pageErrors.join("; "));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
