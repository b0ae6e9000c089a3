// Test 2 (performance): the devices view with 10,000 devices. Seeds the inventory through the
// admin API, then measures in Chromium: navigation → first rows painted → first click on a row's
// checkbox painted (the view is interactive), frame times while scrolling (wheel, keyboard, a
// fast programmatic fling through the whole list), keystroke → paint while typing in the text
// filter, and change → paint of the select filters and header sorts.
// Targets: interactive < 1 s; no stall (a frame over 100 ms) while scrolling with the wheel or
// the keys, typing in the filter or changing filters and sorts — judged with UI_BENCH=1 (a
// release engine, 7 loads, longer scrolls); CI runs it light (3 page loads) and prints the frame
// times without judging them, as it does the programmatic fling (60,000 px/s, a stress, not a
// target).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, makeFirmware, launchBrowser, screenshot, until, stats, fmtMs, printTable, machine, HEAVY, sleep } from '../lib/harness.mjs';
import { probeScript, frameSummary } from '../lib/probe.mjs';
import fs from 'node:fs';

const N = 10_000;
const LOADS = HEAVY ? 7 : 3;
const INTERACTIVE_TARGET = 1000;

const mac = (i) => `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

async function pool(n, concurrency, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < n; i = next++) await fn(i);
  }));
}

test(`devices view with ${N.toLocaleString('en')} devices: interactive, scrolling, filtering`, { timeout: HEAVY ? 600_000 : 240_000 }, async (t) => {
  const engine = await startEngine(t, { args: ['--mqtt', 'off'] });

  // --- Seed: 10,000 devices (3 models, 2 chips, 3 versions), 1,000 of them labelled, one firmware.
  const t0 = Date.now();
  const MODELS = ['demo', 'sensor', 'relay'];
  const VERSIONS = ['1.0.0', '1.1.0', '2.0.0'];
  await pool(N, 32, (i) =>
    engine.api('POST', 'devices', {
      mac: mac(i),
      name: `node-${String(i).padStart(5, '0')}`,
      model: MODELS[i % 3],
      chip: i % 7 === 0 ? 'esp8266' : 'esp32',
      version: VERSIONS[(i >> 2) % 3],
      ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    }),
  );
  await pool(N / 10, 16, (k) => engine.api('POST', `devices/${encodeURIComponent(mac(k * 10))}/labels`, { add: [`line-${k % 5}`], remove: [] }));
  const fw = await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 300_000 });
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(fw)]), 'demo-2.0.0.bin');
  const up = await fetch(`${engine.admin}/api/v1/firmware`, { method: 'POST', headers: { Authorization: `Bearer ${engine.token}` }, body: form });
  assert.ok(up.ok, `firmware upload: ${up.status}`);
  const seeded = await engine.api('GET', 'devices');
  assert.equal(seeded.length, N);
  const seedMs = Date.now() - t0;

  const { browser } = await launchBrowser(t);
  const viewport = { width: 1440, height: 900 };

  // --- Opening the view: LOADS fresh browser contexts (cold cache, fresh storage).
  // The click goes to row 3's checkbox as soon as rows are in the DOM; its position is measured on
  // the first load and reused, so the driver adds as little as it can (one round trip) to the time.
  const loads = [];
  let page;
  let at = null;
  for (let k = 0; k < LOADS; k++) {
    const context = await browser.newContext({ viewport });
    await context.addInitScript(probeScript);
    page = await context.newPage();
    await page.goto(engine.uiUrl('/devices'), { waitUntil: 'commit' });
    await page.evaluate(() => window.__probe.expect('[data-testid="device-row"][aria-selected="true"]'));
    const row = page.locator('[data-testid="device-row"]').nth(2);
    await row.waitFor({ timeout: 30_000 });
    if (!at) {
      const box = await row.getByTestId('device-select').boundingBox();
      at = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    }
    await page.mouse.click(at.x, at.y);
    await page.getByTestId('bulk-bar').waitFor();
    const m = await until(
      () =>
        page.evaluate(() => {
          const p = window.__probe;
          const click = p.interactions.find((x) => x.type === 'click');
          if (!click || p.firstRowAt === null) return null;
          // Its result never painted within the probe's 10 s: a failure, not a fast click.
          if (!Number.isFinite(click.ms)) return { timedOut: true };
          const api = performance.getEntriesByType('resource').find((r) => /\/api\/v1\/devices$/.test(r.name));
          // The click's paint on the page clock (0 = navigation start) = its timeStamp + click→paint.
          return { firstRow: p.firstRowAt, clickToPaint: click.ms, interactiveAt: click.at + click.ms, apiStart: api?.startTime ?? null, apiEnd: api?.responseEnd ?? null, apiDur: api ? api.responseEnd - api.startTime : null, bytes: api?.encodedBodySize ?? null, loaf: Math.max(0, ...p.longFrames.filter((f) => f.at < click.at).map((f) => f.duration)) };
        }),
      { what: 'the probe results of the first click' },
    );
    assert.ok(!m.timedOut, `load ${k + 1}: the first click's result was painted within 10 s`);
    loads.push(m);
    if (k < LOADS - 1) await context.close();
  }
  await page.evaluate(() => window.__probe.takeInteractions());
  await screenshot(page, 'devices-10k');

  // --- Opening the view from another one (data already loaded): nav click → table painted.
  const switches = [];
  for (let k = 0; k < (HEAVY ? 7 : 3); k++) {
    await page.getByTestId('nav-overview').click();
    await page.locator('[data-testid="nav-overview"][aria-current="page"]').waitFor();
    await sleep(300);
    await page.evaluate(() => window.__probe.expect('[data-testid="devices-table"] [data-testid="device-row"]'));
    await page.getByTestId('nav-devices').click();
    await page.getByTestId('device-row').first().waitFor();
    // The switch as the probe saw it (recorded once painted, or after 10 s as timed out).
    await until(() => page.evaluate(() => window.__probe.interactions.some((i) => i.type === 'click' && i.target === 'nav-devices')), { what: 'the view switch measured' });
    const x = (await page.evaluate(() => window.__probe.takeInteractions())).find((i) => i.type === 'click' && i.target === 'nav-devices');
    assert.ok(Number.isFinite(x.ms), `view switch ${k + 1}: the devices table was painted within 10 s`);
    switches.push(x.ms);
  }

  // --- Scrolling.
  const scroll = {};
  const grid = page.getByTestId('devices-table');
  const gb = await grid.boundingBox();
  await page.mouse.move(gb.x + gb.width / 2, gb.y + gb.height / 2);
  await page.evaluate(() => window.__probe.startFrames());
  const WHEELS = HEAVY ? 300 : 120;
  for (let i = 0; i < WHEELS; i++) await page.mouse.wheel(0, 300);
  await sleep(200);
  scroll.wheel = await page.evaluate(() => window.__probe.stopFrames());
  const wheeled = await page.evaluate(() => document.querySelector('[data-testid="devices-table"] .vlist').scrollTop);
  assert.ok(wheeled > WHEELS * 300 * 0.5, `the wheel scrolled the list (${wheeled} px)`);

  await grid.focus();
  await page.evaluate(() => window.__probe.startFrames());
  // At a keyboard's auto-repeat rate (30/s), not as fast as the driver can send keys.
  for (let i = 0; i < (HEAVY ? 60 : 30); i++) {
    await page.keyboard.press('PageDown');
    await sleep(33);
  }
  await page.keyboard.press('End');
  await page.keyboard.press('Home');
  await sleep(200);
  scroll.keys = await page.evaluate(() => window.__probe.stopFrames());
  const keyScroll = await page.evaluate(() => window.__probe.takeInteractions());

  await page.evaluate(() => window.__probe.startFrames());
  await page.evaluate(
    (step) =>
      new Promise((resolve) => {
        const el = document.querySelector('[data-testid="devices-table"] .vlist');
        const tick = () => {
          el.scrollTop += step;
          if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) resolve();
          else requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
      }),
    HEAVY ? 1000 : 2000,
  );
  await sleep(200);
  scroll.fling = await page.evaluate(() => window.__probe.stopFrames());
  // The bottom of the list is rendered, and in view: the last device in the table's order (by
  // name, which is node-<n>: the highest n) is a row inside the grid.
  const bottom = page.locator(`[data-testid="device-row"][data-mac="${mac(N - 1)}"]`);
  const box = await bottom.boundingBox();
  const grid2 = await grid.boundingBox();
  assert.ok(box && box.y >= grid2.y - 1 && box.y + box.height <= grid2.y + grid2.height + 1, `the last device's row is shown at the bottom (${JSON.stringify(box)})`);
  await page.keyboard.press('Home');

  // --- Typing in the text filter (one keystroke every 60 ms, like a fast typist).
  const filter = page.getByTestId('filter-text');
  await filter.click();
  await page.evaluate(() => window.__probe.takeInteractions());
  await page.evaluate(() => window.__probe.startFrames());
  await filter.pressSequentially('node-012', { delay: 60 });
  await until(async () => (await page.getByTestId('devices-count').textContent()).startsWith('100 of'), { what: '"node-012" to leave 100 rows' });
  await filter.press('Control+a');
  await filter.press('Backspace');
  await filter.pressSequentially('00:00:1f:', { delay: 60 });
  await until(async () => (await page.getByTestId('devices-count').textContent()).startsWith('256 of'), { what: 'a MAC prefix to leave 256 rows' });
  await filter.press('Control+a');
  await filter.press('Backspace');
  await sleep(200);
  scroll.typing = await page.evaluate(() => window.__probe.stopFrames());
  const typing = (await page.evaluate(() => window.__probe.takeInteractions())).filter((x) => x.type === 'keydown');

  // --- Select filters and sorts: change/click → paint.
  await page.evaluate(() => window.__probe.startFrames());
  const filterSteps = [
    ['filter-version', 'outdated'],
    ['filter-label', 'line-3'],
    ['filter-online', 'online'],
    ['filter-family', ''],
    ['filter-version', '=1.1.0'],
  ];
  for (const [id, value] of filterSteps) {
    await page.getByTestId(id).selectOption(value);
    await sleep(100);
  }
  // Labelled line-3, running 1.1.0, online (every device added by hand is, for ten minutes):
  // the seed makes that 67 devices, and the engine's own list must agree before the view is held to it.
  const wanted = (d) => d.labels.includes('line-3') && d.version === '1.1.0' && d.online;
  let bySeed = 0;
  for (let k = 0; k < N / 10; k++) if (k % 5 === 3 && ((k * 10) >> 2) % 3 === 1) bySeed++;
  assert.equal(seeded.filter(wanted).length, bySeed, 'the engine lists the seeded devices as seeded, all online');
  const countRe = new RegExp(`^\\s*${bySeed} of 10,000 devices`);
  await until(async () => countRe.test(await page.getByTestId('devices-count').textContent()), { what: `the count to say ${bySeed} of 10,000 devices` });
  // And the rows drawn are those devices, every one of them among the engine's.
  const wantedMacs = new Set(seeded.filter(wanted).map((d) => d.mac));
  const drawn = await page.getByTestId('device-row').evaluateAll((rs) => rs.map((r) => r.dataset.mac));
  assert.ok(drawn.length >= Math.min(10, bySeed), `rows drawn for the filter: ${drawn.length}`);
  assert.deepEqual(drawn.filter((m) => !wantedMacs.has(m)), [], 'every row drawn passes the filters');
  await page.evaluate(() => window.__probe.expect('[data-testid="devices-table"] [data-testid="device-row"]'));
  await page.getByTestId('filter-clear').click();
  await sleep(100);
  for (const key of ['name', 'version', 'last_seen', 'mac']) {
    await page.getByTestId(`sort-${key}`).click({ force: true });
    await sleep(100);
  }
  await sleep(200);
  scroll.filters = await page.evaluate(() => window.__probe.stopFrames());
  const filterInteractions = await page.evaluate(() => window.__probe.takeInteractions());
  await screenshot(page, 'devices-10k-filtered');
  const longFrames = await page.evaluate(() => window.__probe.longFrames);

  // --- Report.
  const L = (f) => stats(loads.map(f).filter((x) => x !== null));
  const rows = [
    { measure: 'navigation → GET /api/v1/devices sent', ...pick(L((l) => l.apiStart)) },
    { measure: 'GET /api/v1/devices (10k devices) duration', ...pick(L((l) => l.apiDur)) },
    { measure: 'answer received → first rows painted (UI work)', ...pick(L((l) => l.firstRow - l.apiEnd)) },
    { measure: 'longest animation frame before the click', ...pick(L((l) => l.loaf)) },
    { measure: 'navigation → first rows painted', ...pick(L((l) => l.firstRow)) },
    { measure: 'navigation → first click on a row painted (interactive)', ...pick(L((l) => l.interactiveAt)) },
    { measure: 'that click → paint', ...pick(L((l) => l.clickToPaint)) },
    { measure: 'first rows painted + click → paint (no driver delay)', ...pick(L((l) => l.firstRow + l.clickToPaint)) },
    { measure: 'from the Overview: nav click → devices table painted', ...pick(stats(switches)) },
  ];
  printTable(`Devices view, ${N.toLocaleString('en')} devices — opening (${LOADS} fresh loads) — ${machine()}`, rows);
  const frames = Object.entries({
    [`wheel scroll (${WHEELS} × 300 px)`]: scroll.wheel,
    'keyboard PageDown (30/s), End, Home': scroll.keys,
    [`fling to the bottom (${HEAVY ? 1000 : 2000} px per frame)`]: scroll.fling,
    'typing in the text filter': scroll.typing,
    'select filters + header sorts': scroll.filters,
  }).map(([k, d]) => {
    const s = frameSummary(d, stats);
    return { phase: k, frames: s.n, p50: fmtMs(s.p50), p95: fmtMs(s.p95), max: fmtMs(s.max), '> 50 ms': s.over50, '> 100 ms': s.over100 };
  });
  printTable('Devices view, 10k — frame times (requestAnimationFrame deltas)', frames);
  const inter = [
    { interaction: 'keystroke in the text filter → paint', ...pick(stats(typing.map((x) => x.ms))) },
    { interaction: 'PageDown/End/Home key → paint', ...pick(stats(keyScroll.filter((x) => x.type === 'keydown').map((x) => x.ms))) },
    { interaction: 'select filter change → paint', ...pick(stats(filterInteractions.filter((x) => x.type === 'change').map((x) => x.ms))) },
    { interaction: 'click (clear filters, sort headers) → paint', ...pick(stats(filterInteractions.filter((x) => x.type === 'click').map((x) => x.ms))) },
  ];
  printTable('Devices view, 10k — input → next paint', inter);
  console.log(`devices JSON: ${((loads[0].bytes ?? 0) / 1e6).toFixed(2)} MB; seeding ${N} devices + 1,000 labels + 1 firmware through the API: ${(seedMs / 1000).toFixed(1)} s; long animation frames (LoAF ≥ 50 ms) over the session: ${longFrames.length}${longFrames.length ? `, longest ${fmtMs(Math.max(...longFrames.map((f) => f.duration)))}` : ''}`);

  // --- Targets. UI_BENCH=1 (release engine) checks the target on every load. CI runs a debug
  // engine, whose 10k-device answer alone can take over a second on a busy 2-core machine: it
  // checks the UI's own share (answer received → rows painted) and the first click instead.
  const interactive = loads.map((l) => l.interactiveAt);
  assert.ok(interactive.every(Number.isFinite), `every load measured: ${interactive}`);
  if (HEAVY) {
    const worst = Math.max(...interactive);
    assert.ok(worst < INTERACTIVE_TARGET, `devices view interactive in ${worst.toFixed(0)} ms at worst (target < ${INTERACTIVE_TARGET} ms)`);
  } else {
    const uiShare = stats(loads.map((l) => l.firstRow - l.apiEnd)).p50;
    assert.ok(uiShare < INTERACTIVE_TARGET / 2, `answer → first rows painted in ${uiShare.toFixed(0)} ms (median; < ${INTERACTIVE_TARGET / 2} ms)`);
    const click = stats(loads.map((l) => l.clickToPaint)).p50;
    assert.ok(click < 100, `first click → paint ${click.toFixed(0)} ms (median; < 100 ms)`);
  }
  if (HEAVY) {
    for (const [phase, d] of Object.entries({ wheel: scroll.wheel, keys: scroll.keys, typing: scroll.typing, filters: scroll.filters })) {
      const f = frameSummary(d, stats);
      assert.ok(f.n > 0, `${phase}: frames measured`);
      assert.equal(f.over100, 0, `${phase}: no frame over 100 ms (worst ${fmtMs(f.max)})`);
    }
  }
  const switchMax = stats(switches).max;
  assert.ok(switchMax < INTERACTIVE_TARGET, `devices view (10k) painted ${switchMax.toFixed(0)} ms after the nav click at worst (target < ${INTERACTIVE_TARGET} ms)`);
  const typingMax = stats(typing.map((x) => x.ms)).max;
  assert.ok(typingMax < 250, `every keystroke in the filter painted within 250 ms (worst ${typingMax.toFixed(0)} ms)`);
});

function pick(s) {
  return { n: s.n, p50: fmtMs(s.p50), p95: fmtMs(s.p95), max: fmtMs(s.max) };
}
