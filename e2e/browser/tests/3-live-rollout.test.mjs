// Test 3 (performance): live progress of a big rollout. A simulated fleet (half HTTP pull, half
// MQTT) is updated by a staged rollout (the wizard's defaults, created through the API) while the
// test keeps using the UI:
// clicks on the theme toggle and the nav, keystrokes in the live view's device filter. Each input
// is timed from its event timestamp to the first paint showing its result (in-page probe), frame
// times are recorded all along, and when the engine says the rollout is completed the live view
// must show the same counts within 1 s (events coalesced, no backlog).
// Target: click → paint < 100 ms during live progress of 2,000 devices (UI_BENCH=1);
// CI runs 200 devices.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startEngine, startSim, makeFirmware, launchBrowser, screenshot, until, stats, fmtMs, printTable, machine, HEAVY, sleep } from '../lib/harness.mjs';
import { probeScript, frameSummary } from '../lib/probe.mjs';

const N = HEAVY ? 2000 : 200;
const CONCURRENCY = HEAVY ? 100 : 50;
const CLICK_TARGET = 100;
const BACKLOG_TARGET = 1000;

test(`live progress of ${N.toLocaleString('en')} devices: input stays responsive, no backlog`, { timeout: HEAVY ? 900_000 : 240_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: N / 2, mqtt: N / 2, poll: '1s', reboot: '500ms' });
  await until(async () => (await engine.api('GET', 'devices')).filter((d) => d.online).length === N, {
    timeout: HEAVY ? 120_000 : 60_000,
    interval: 500,
    what: `${N} simulated devices online (sim: ${sim.log})`,
  });
  const fw = await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 300_000 });
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(fw)]), 'demo-2.0.0.bin');
  const up = await fetch(`${engine.admin}/api/v1/firmware`, { method: 'POST', headers: { Authorization: `Bearer ${engine.token}` }, body: form });
  assert.ok(up.ok, `firmware upload: ${up.status}`);

  const { page, problems } = await launchBrowser(t);
  await page.context().addInitScript(probeScript);
  await page.goto(engine.uiUrl('/devices'));
  await until(async () => (await page.getByTestId('devices-count').textContent())?.includes(`${N.toLocaleString('en')} devices`), { timeout: 30_000, what: `${N} devices in the UI` });

  // --- The rollout: the wizard's defaults (test 1 covers the wizard itself), concurrency raised
  // for a busy live view, created through the API; the UI opens it from the rollouts list.
  const evBefore = (await engine.api('GET', 'events?limit=1')).events?.[0]?.id ?? 0;
  const created = await engine.api('POST', 'rollouts', {
    firmware: '2.0.0',
    target: 'model:demo and outdated and online',
    name: `live ${N}`,
    waves: [{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }],
    max_failures: { percent: 10 },
    success_gate: 90,
    concurrency: CONCURRENCY,
    step_timeout_secs: 300,
    retries: 1,
    manual_approval: false,
    window: null,
    allow_downgrade: false,
    start: true,
  });
  const id = created.rollout.id;
  assert.equal(created.jobs.length, N, `${N} jobs`);
  await page.getByTestId('nav-rollouts').click();
  await page.locator(`[data-testid="rollout-row"][data-id="${id}"] [data-testid="rollout-link"]`).click();
  await page.locator('[data-testid="rollout-live"] [data-testid="rollout-state"]').waitFor();
  const startedAt = Date.now();

  // --- Use the UI while it runs.
  await page.evaluate(() => window.__probe.startFrames());
  const samples = []; // UI succeeded count vs the API's, sampled on the live view
  const onLive = async () => page.locator('[data-testid="rollout-live"] [data-testid="rollout-state"]').count();
  const click = async (testid, expect, nth = 0) => {
    await page.evaluate((sel) => window.__probe.expect(sel), expect);
    await page.getByTestId(testid).nth(nth).click();
    await page.locator(expect).first().waitFor({ timeout: 10_000 });
  };
  // The choice is on <html data-theme-pref>; data-theme is the palette it resolves to.
  const themeNext = {
    system: 'html[data-theme-pref="light"]',
    light: 'html[data-theme-pref="dark"]',
    dark: 'html[data-theme-pref="system"]',
  };
  // One round of use: theme toggle, a keystroke and its deletion in the live view's filter, and
  // (when `nav`) Devices → Rollouts → back to the live view through the nav and the list.
  const cycle = async (nav) => {
    const theme = (await page.getByTestId('theme-toggle').textContent()).replace('Theme:', '').trim();
    await click('theme-toggle', themeNext[theme]);
    await sleep(150);
    const f = page.getByTestId('jobs-filter-text');
    await f.press('0');
    await sleep(100);
    await f.press('Backspace');
    await sleep(150);
    if (nav) {
      await click('nav-devices', '[data-testid="devices-table"]');
      await sleep(250);
      await click('nav-rollouts', '[data-testid="rollouts-table"]');
      await sleep(250);
      await click('rollout-link', '[data-testid="rollout-live"] [data-testid="rollout-state"]');
      await sleep(250);
    }
  };
  // What the live view shows (state and the summary counts), logged with wall-clock times whenever it changes (checked every frame).
  await page.evaluate(() => {
    const log = (window.__uiLog = []);
    let last = '';
    const num = (k) => Number(document.querySelector(`[data-testid="rollout-live"] [data-testid="rollout-count-${k}"]`)?.textContent ?? NaN);
    const tick = () => {
      const st = document.querySelector('[data-testid="rollout-live"] [data-testid="rollout-state"]')?.getAttribute('data-state') ?? null;
      const counts = { succeeded: num('succeeded'), failed: num('failed') };
      const key = `${st}|${counts.succeeded}|${counts.failed}`;
      if (key !== last) {
        last = key;
        log.push({ at: performance.timeOrigin + performance.now(), st, counts });
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  // The engine's view, polled every 50 ms (the light list route), until completed.
  const deadline = Date.now() + (HEAVY ? 600_000 : 180_000);
  let latest = null;
  let apiDone = null;
  const watcher = (async () => {
    while (!apiDone && Date.now() < deadline) {
      const r = (await engine.api('GET', 'rollouts')).find((x) => x.id === id);
      latest = r;
      if (r.state === 'completed' || r.state === 'cancelled' || r.state === 'paused') apiDone = { at: Date.now(), state: r.state, reason: r.pause_reason };
      else await sleep(50);
    }
  })();
  let cycles = 0;
  while (!apiDone && Date.now() < deadline) {
    if (!latest) {
      await sleep(50);
      continue;
    }
    const c = latest.counts;
    const progress = (c.total - c.queued - c.in_flight) / Math.max(1, c.total);
    if (await onLive()) {
      const ui = await page.getByTestId('rollout-count-succeeded').textContent();
      samples.push({ api: c.succeeded, ui: Number(ui.trim()), progress });
      // Leave the live view only while far from the end, so it is open when the rollout completes.
      await cycle(progress < 0.6);
    } else {
      await click('rollout-link', '[data-testid="rollout-live"] [data-testid="rollout-state"]');
    }
    cycles++;
  }
  await watcher;
  assert.equal(apiDone?.state, 'completed', `rollout ${id} completed in time (${apiDone?.reason ?? ''})`);

  // --- No backlog: within 1 s of the engine saying "completed", the live view says so too, with the same counts.
  const detail = await engine.api('GET', `rollouts/${id}`);
  const count = (st) => detail.jobs.filter((j) => j.state === st).length;
  const want = { succeeded: count('succeeded'), failed: count('failed') + count('timed_out') };
  // The simulated fleet runs without failures: every device updated (the rollout's thresholds
  // would let up to a tenth fail and still complete).
  assert.deepEqual(want, { succeeded: N, failed: 0 }, `the engine's end state: ${JSON.stringify(detail.rollout.counts)}`);
  const caughtUp = await until(
    async () =>
      (await page.evaluate(() => window.__uiLog)).find((e) => e.st === 'completed' && e.counts.succeeded === want.succeeded && e.counts.failed === want.failed),
    { timeout: 15_000, interval: 50, what: `the live view to show ${JSON.stringify(want)} (API completed)` },
  );
  const uiCounts = { state: caughtUp.st, ...caughtUp.counts };
  const apiDoneAt = apiDone.at;
  // Negative: the UI showed it before the 50 ms poll saw it.
  const lagMs = Math.round(caughtUp.at - apiDoneAt);
  const durationS = (apiDoneAt - startedAt) / 1000;
  const frames = await page.evaluate(() => window.__probe.stopFrames());
  const inter = await page.evaluate(() => window.__probe.takeInteractions());
  const et = await page.evaluate(() => window.__probe.takeEventTiming());
  // The same rounds once the fleet is idle again: what the live progress itself costs.
  for (let k = 0; k < 5; k++) await cycle(true);
  const idle = await page.evaluate(() => window.__probe.takeInteractions());
  const longFrames = await page.evaluate(() => window.__probe.longFrames);
  const evAfter = (await engine.api('GET', 'events?limit=1')).events?.[0]?.id ?? 0;
  await screenshot(page, `live-${N}`);

  // --- Report.
  const by = (list, pred) => stats(list.filter(pred).map((x) => x.ms).filter((x) => x !== null));
  const clicks = by(inter, (x) => x.type === 'click');
  const KINDS = [
    ['every click → paint of its result', (x) => x.type === 'click'],
    ['  theme toggle', (x) => x.type === 'click' && x.target === 'theme-toggle'],
    ['  nav: Devices', (x) => x.type === 'click' && x.target === 'nav-devices'],
    ['  nav: Rollouts', (x) => x.type === 'click' && x.target === 'nav-rollouts'],
    ['  rollout link → live view', (x) => x.type === 'click' && x.target === 'rollout-link'],
    ['keystroke in the live device filter → paint', (x) => x.type === 'keydown'],
  ];
  const rows = KINDS.map(([k, pred]) => {
    const live = by(inter, pred);
    const still = by(idle, pred);
    return { interaction: k, ...pick(live), 'idle p50': fmtMs(still.p50), 'idle max': fmtMs(still.max) };
  });
  rows.push({ interaction: 'Event Timing API, interactions ≥ 16 ms (duration)', ...pick(stats(et.map((e) => e.duration))), 'idle p50': '', 'idle max': '' });
  printTable(`Live rollout, ${N.toLocaleString('en')} devices (${N / 2} pull + ${N / 2} MQTT, concurrency ${CONCURRENCY}) — input → paint while it runs (and idle after) — ${machine()}`, rows);
  const f = frameSummary(frames, stats);
  const maxBehind = samples.reduce((m, s) => Math.max(m, s.api - s.ui), 0);
  printTable('Live rollout — frames and backlog', [
    { measure: 'rollout duration', value: `${durationS.toFixed(1)} s (${cycles} interaction cycles)` },
    { measure: 'events written by the engine during the rollout', value: `${evAfter - evBefore} (${((evAfter - evBefore) / durationS).toFixed(0)}/s), plus live rollout.progress frames` },
    { measure: 'frame times (rAF deltas)', value: `n ${f.n}, p50 ${fmtMs(f.p50)}, p95 ${fmtMs(f.p95)}, max ${fmtMs(f.max)}, > 50 ms: ${f.over50}, > 100 ms: ${f.over100}` },
    { measure: 'long animation frames (LoAF ≥ 50 ms)', value: `${longFrames.length}${longFrames.length ? `, longest ${fmtMs(Math.max(...longFrames.map((x) => x.duration)))}` : ''}` },
    { measure: 'UI "succeeded" behind the API while running (max of samples)', value: `${maxBehind} devices (${samples.length} samples)` },
    { measure: 'API completed → live view shows completed + same counts', value: `${lagMs} ms (${JSON.stringify(uiCounts)}; API polled every 50 ms)` },
  ]);

  assert.ok(clicks.n >= 5, `enough clicks measured (${clicks.n})`);
  assert.ok(!inter.some((x) => x.timeout), 'every interaction showed its result');
  assert.ok(lagMs < BACKLOG_TARGET, `live view caught up ${lagMs} ms after completion (target < ${BACKLOG_TARGET} ms)`);
  // UI_BENCH=1 judges the 95th percentile against the target. CI (a debug engine and fleet
  // sharing 2 cores with the browser and, often, other jobs) judges the median, and that no click
  // stalls the page for long.
  const judged = HEAVY ? clicks.p95 : clicks.p50;
  assert.ok(judged < CLICK_TARGET, `click → paint ${HEAVY ? 'p95' : 'median'} ${judged.toFixed(0)} ms (target < ${CLICK_TARGET} ms)`);
  if (!HEAVY) assert.ok(clicks.max < 5 * CLICK_TARGET, `no click took more than ${5 * CLICK_TARGET} ms to paint (worst ${clicks.max.toFixed(0)} ms)`);
  assert.equal(sim.exitCode, null, 'the simulated fleet still runs');
});

function pick(s) {
  return { n: s.n, p50: fmtMs(s.p50), p95: fmtMs(s.p95), max: fmtMs(s.max) };
}
