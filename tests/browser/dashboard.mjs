// The dashboard in a real browser (Debian's chromium, driven by playwright-core).
//
//   node tests/browser/dashboard.mjs URL OUT_DIR TIMEOUT_S
//
// Loads the page, waits for a job that was not there at first paint to appear and reach
// "settled" (live, from /events), opens it, and fails on any console error, page error or failed
// request. Screenshots go to OUT_DIR; one JSON line of results goes to stdout.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [url, out, timeoutS] = [process.argv[2], process.argv[3] ?? ".", Number(process.argv[4] ?? 90)];
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const result = { url, errors: [], first_paint_ms: null, new_job: null, ok: false };
let finished = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
  page.on("console", (m) => { if (m.type() === "error" && !finished) result.errors.push("console: " + m.text()); });
  page.on("pageerror", (e) => result.errors.push("page: " + e.message));
  page.on("requestfailed", (r) => { if (!finished) result.errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`); });
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("#cards .card", { timeout: 10_000 });
  result.first_paint_ms = await page.evaluate(() => {
    const p = performance.getEntriesByName("first-contentful-paint")[0];
    return p ? Math.round(p.startTime) : null;
  });
  await page.screenshot({ path: `${out}/dashboard-first.png`, fullPage: true });
  const before = new Set(await page.$$eval("[data-job-id]", (rows) => rows.map((r) => r.dataset.jobId)));
  // A job submitted after the page loaded, shown settled without a reload.
  const handle = await page.waitForFunction((known) => {
    const row = [...document.querySelectorAll("[data-job-id]")].find((r) => !known.includes(r.dataset.jobId) && r.dataset.status === "settled");
    return row ? row.dataset.jobId : null;
  }, [...before], { timeout: timeoutS * 1000, polling: 250 });
  result.new_job = await handle.jsonValue();
  result.live = await page.$eval("#live", (e) => e.className);
  result.blocks_plotted = await page.$$eval("#workplot rect", (r) => r.length);
  result.job_blocks_plotted = await page.$$eval('#workplot rect[fill="#4cc38a"]', (r) => r.length);
  result.providers_shown = await page.$$eval("#providers tr[data-provider]", (r) => r.length);
  await page.click(`[data-job-id="${result.new_job}"]`);
  await page.waitForSelector("#detail h2", { timeout: 10_000 });
  result.detail = await page.$eval("#detail p", (e) => e.textContent);
  // The settled job's measured energy, and the network's, as the page shows them.
  result.job_energy_shown = /Energy: [\d.]+ k?J \([\d.]+ CPU-seconds measured by its providers\)/.test(result.detail);
  result.energy_card = await page.$$eval("#cards .card", (cards) => cards.map((c) => c.textContent).find((t) => t.startsWith("energy on jobs")) || null);
  await page.screenshot({ path: `${out}/dashboard-job.png`, fullPage: true });
  result.ok = result.errors.length === 0 && result.live === "on" && result.blocks_plotted > 0 && result.providers_shown > 0 && result.job_energy_shown;
} catch (e) {
  result.errors.push("test: " + e.message.split("\n")[0]);
} finally {
  finished = true;
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
