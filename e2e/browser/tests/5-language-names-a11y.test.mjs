// Test 5 (functional): the UI on a browser whose language is "c" (what WebKitGTK reports under
// LANG=C.UTF-8, the default of a fresh Debian install; Intl rejects it), after a rollout in which
// some devices failed. Every view must render with its numbers and dates, name devices instead
// of MACs (overview failures: one line per device; events: sentences), find devices in the live
// view by the name shown, keep filtered views in the URL (tiles, back button), and pass the
// checks an accessibility audit would make here: header cells with text, row buttons with unique
// names, a skip link first, focus in the main region after a `g` shortcut, cell borders that line
// up with their row's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, startSim, makeFirmware, uploadFirmware, untilOnline, launchBrowser, screenshot, until } from '../lib/harness.mjs';

const PULL = 4;
const MQTT = 4;
const N = PULL + MQTT;
const MAC_TEXT = /\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b/;

/** In the page: header cells without text, and row buttons whose accessible names repeat. */
function auditScript() {
  const name = (el) => (el.getAttribute('aria-label') || el.textContent || '').trim();
  const emptyHeaders = [...document.querySelectorAll('main th, main [role="columnheader"]')]
    .filter((h) => !name(h) && !h.querySelector('[aria-label]'))
    .map((h) => h.outerHTML.slice(0, 120));
  const names = [...document.querySelectorAll('main tr button, main tr a.button, main [role="row"] button, main li button')].map(name);
  const seen = new Map();
  for (const n of names) seen.set(n, (seen.get(n) ?? 0) + 1);
  const repeated = [...seen].filter(([, c]) => c > 1).map(([n, c]) => `${n} ×${c}`);
  const headers = document.querySelectorAll('main th, main [role="columnheader"]').length;
  return { emptyHeaders, repeated, buttons: names.length, headers };
}

test('language "c": every view renders, names not MACs, URL filters, accessibility checks', { timeout: 180_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: PULL, mqtt: MQTT, poll: '1s', reboot: '500ms', extra: ['--fail', 'boot=25%'] });
  await untilOnline(engine, N, sim);
  const fw = await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 200_000 }));
  await engine.api('PATCH', `firmware/${fw.id}`, {
    notes: 'Fixes the watchdog reset on boot and adds the new sensor calibration; a note long enough to wrap onto several lines of the table',
  });
  // A rollout that runs to the end despite failures (no pause, no gate).
  const created = await engine.api('POST', 'rollouts', {
    firmware: '2.0.0',
    target: 'model:demo and outdated and online',
    name: 'line 3',
    waves: [{ count: 1 }, { percent: 50 }, { percent: 100 }],
    max_failures: { percent: 100 },
    success_gate: 0,
    concurrency: 8,
    step_timeout_secs: 30,
    retries: 0,
    manual_approval: false,
    window: null,
    allow_downgrade: false,
    start: true,
  });
  const id = created.rollout.id;
  const detail = await until(
    async () => {
      const d = await engine.api('GET', `rollouts/${id}`);
      return d.rollout.state === 'completed' && d;
    },
    { timeout: 90_000, interval: 500, what: 'the rollout to complete' },
  );
  const failedMacs = [...new Set(detail.jobs.filter((j) => j.state === 'failed' || j.state === 'timed_out').map((j) => j.mac))];
  assert.ok(failedMacs.length > 0, 'the simulated fleet made some devices fail');
  const devices = await engine.api('GET', 'devices');
  const nameOf = (mac) => {
    const d = devices.find((x) => x.mac === mac);
    return d?.name || d?.device_id || mac;
  };

  const { browser, page, problems } = await launchBrowser(t, { language: 'c' });

  try {
    await page.goto(engine.uiUrl());
    // The condition is real: the page says "c", and Intl refuses it.
    assert.equal(await page.evaluate(() => navigator.language), 'c');
    assert.equal(
      await page.evaluate(() => {
        try {
          new Intl.NumberFormat(navigator.language);
          return 'accepted';
        } catch (e) {
          return e.name;
        }
      }),
      'RangeError',
    );

    // --- Overview: numbers, charts, failures by name (one line per device).
    await until(async () => (await page.getByTestId('tile-devices').textContent())?.includes(`${N} devices`), { timeout: 15_000, what: `the overview to count ${N} devices` });
    assert.match(await page.getByTestId('chart-versions').textContent(), /2\.0\.0/);
    await page.getByTestId('failure-line').first().waitFor({ timeout: 10_000 });
    const lines = await page.getByTestId('failure-line').evaluateAll((ls) => ls.map((l) => ({ mac: l.dataset.mac, name: l.querySelector('a')?.textContent?.trim(), text: l.textContent })));
    assert.deepEqual(lines.map((l) => l.mac).sort(), [...failedMacs].sort(), 'one line per failed device');
    for (const l of lines) {
      assert.equal(l.name, nameOf(l.mac), `the failure line names ${l.mac}`);
      assert.doesNotMatch(l.name, MAC_TEXT);
      assert.match(l.text, new RegExp(`Rollout ${id} “line 3”`));
    }
    await screenshot(page, 'lang-c-overview');

    // --- Tiles link to filtered views, in the URL; Back returns.
    await page.getByTestId('tile-online').click();
    await until(() => page.url().includes('#/devices?online=online'), { what: 'the online tile to open the devices filtered to online' });
    await until(async () => (await page.getByTestId('devices-count').textContent())?.includes(`${N} of ${N} devices`), { what: 'the filtered count' });
    await page.goBack();
    await page.locator('[data-testid="nav-overview"][aria-current="page"]').waitFor();
    await page.getByTestId('tile-rollouts').click();
    await until(() => page.url().includes('#/rollouts?state=running,paused'), { what: 'the rollouts tile to open running/paused rollouts' });
    await page.getByTestId('rollouts-none').waitFor();

    // --- Devices: rows with versions and times.
    await page.getByTestId('nav-devices').click();
    await until(async () => (await page.getByTestId('device-row').count()) === N, { what: `${N} device rows` });
    // Every last-seen time is a time in words (these devices check in every second), never
    // "—", "NaN" or "Invalid Date".
    const lastSeen = await page.getByTestId('device-last-seen').allTextContents();
    assert.equal(lastSeen.length, N);
    for (const t of lastSeen) assert.match(t.trim(), /^(just now|\d+ s ago|\d+ min ago)$/, `a last-seen time: ${t}`);

    // --- Rollouts: a row with numbers and a date.
    await page.getByTestId('nav-rollouts').click();
    const row = page.locator(`[data-testid="rollout-row"][data-id="${id}"]`);
    await row.waitFor();
    assert.match(await row.textContent(), /100 %/);
    assert.match(await row.locator('td').last().textContent(), /\d/);

    // --- Live view: the search finds devices by the name shown (device id) and by MAC.
    await row.getByTestId('rollout-link').click();
    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor();
    const someone = failedMacs[0];
    const shown = nameOf(someone);
    const search = page.getByTestId('jobs-filter-text');
    await search.fill(shown.split('-').slice(-2).join('-')); // e.g. "pull-3", part of what the row shows
    // Exactly that device's row: the unfiltered list holds it too, so "includes" would not tell.
    await until(async () => JSON.stringify(await page.getByTestId('job-row').evaluateAll((rs) => rs.map((r) => r.dataset.mac))) === JSON.stringify([someone]), { what: `"${shown}" found by its name, and only it` });
    await search.fill(someone.slice(-5));
    await until(async () => (await page.getByTestId('job-row').count()) === 1, { what: 'one row for the end of a MAC' });
    await search.fill('');
    const liveAudit = await page.evaluate(auditScript);
    assert.deepEqual(liveAudit.emptyHeaders, [], 'live view: every column header has text');
    assert.deepEqual(liveAudit.repeated, [], 'live view: row buttons have unique names');
    // (A finished rollout's rows have no buttons: the unique names are checked on the firmware
    // rows below, where there are several.)
    await screenshot(page, 'lang-c-live');

    // --- Events: sentences with names, not device:<mac>; raw data behind a disclosure.
    await page.getByTestId('nav-events').click();
    await page.getByTestId('event-row').first().waitFor();
    const sentences = await page.getByTestId('event-sentence').allTextContents();
    assert.ok(sentences.length > 10, `events shown: ${sentences.length}`);
    for (const s of sentences) assert.doesNotMatch(s, /device:|rollout:|firmware:\d/, `a sentence, not a subject id: ${s}`);
    assert.ok(sentences.some((s) => s.includes(`${shown} failed in Rollout ${id} “line 3”`)), `a failure sentence names ${shown}`);
    assert.ok(sentences.some((s) => /^Firmware demo 2\.0\.0 imported/.test(s)), 'the import reads as a sentence');
    const first = page.getByTestId('event-row').first();
    await first.locator('details.raw summary').click();
    JSON.parse(await first.getByTestId('event-raw').textContent());
    await page.getByTestId('events-filter-text').fill(shown);
    await until(async () => {
      const got = await page.getByTestId('event-sentence').allTextContents();
      return got.length > 0 && got.every((s) => s.includes(shown));
    }, { what: `the events filter to keep only ${shown}’s events` });
    assert.match(await page.getByTestId('events-filter-text').getAttribute('aria-label'), /^Filter the events shown/);
    await screenshot(page, 'lang-c-events');

    // --- Firmware: the action column has a header text, row buttons name their firmware, and
    // every cell's bottom border lines up with its row's (the notes wrap).
    // A second firmware: two rows of the same buttons, whose names must tell them apart.
    await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.1', project: 'demo', size: 200_000 }));
    await page.getByTestId('nav-firmware').click();
    await until(async () => (await page.getByTestId('firmware-row').count()) === 2, { what: 'two firmware rows' });
    const fwAudit = await page.evaluate(auditScript);
    assert.deepEqual(fwAudit.emptyHeaders, [], 'firmware: every column header has text');
    assert.ok(fwAudit.buttons >= 2, `firmware: row buttons to audit (${fwAudit.buttons})`);
    assert.deepEqual(fwAudit.repeated, [], 'firmware: row buttons have unique names');
    const deletes = await page.getByTestId('firmware-delete').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label')).sort());
    assert.deepEqual(deletes, ['Delete firmware demo 2.0.0', 'Delete firmware demo 2.0.1']);
    const misaligned = await page.getByTestId('firmware-row').evaluateAll((rows) =>
      rows.flatMap((r) => {
        const bottom = r.getBoundingClientRect().bottom;
        return [...r.children].filter((td) => Math.abs(td.getBoundingClientRect().bottom - bottom) > 1).map((td) => td.className || td.textContent.slice(0, 20));
      }),
    );
    assert.deepEqual(misaligned, [], 'every cell ends where its row ends');
    assert.equal(await page.getByTestId('import-clear-done').count(), 0, '"Clear imported" only after an import');
    await screenshot(page, 'lang-c-firmware');

    // Each view audited once its rows are there (an audit of a view still loading checks
    // nothing), with what there is to audit: its column headers, and its row buttons (the
    // devices view has one a row; the others' rows are links).
    const views = [
      ['overview', async () => (await page.getByTestId('tile-devices').textContent())?.includes(`${N} devices`), { tables: true, buttons: 0 }],
      ['devices', async () => (await page.getByTestId('device-row').count()) === N, { tables: true, buttons: N }],
      ['rollouts', async () => (await page.getByTestId('rollout-row').count()) === 1, { tables: true, buttons: 0 }],
      ['events', async () => (await page.getByTestId('event-row').count()) > 10, { tables: true, buttons: 0 }],
      ['settings', async () => (await page.getByTestId('settings-form-panel').count()) === 1, { tables: false, buttons: 0 }],
    ];
    for (const [v, isReady, want] of views) {
      await page.getByTestId(`nav-${v}`).click();
      await page.locator(`[data-testid="nav-${v}"][aria-current="page"]`).waitFor();
      await until(isReady, { what: `the ${v} view's content` });
      const a = await page.evaluate(auditScript);
      assert.equal(a.headers > 0, want.tables, `${v}: column headers to audit (${a.headers})`);
      assert.equal(a.buttons, want.buttons, `${v}: row buttons audited`);
      assert.deepEqual(a.emptyHeaders, [], `${v}: every column header has text`);
      assert.deepEqual(a.repeated, [], `${v}: row buttons have unique names`);
    }

    // --- Keyboard: the skip link comes first and leads into the main region; `g d` puts the
    // focus on the new view's heading, not the body.
    await page.reload();
    await page.locator('main h1').first().waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'skip-link');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent?.trim()), 'Skip to content');
    await page.keyboard.press('Enter');
    assert.ok(await page.evaluate(() => !!document.activeElement?.closest('main')), 'the skip link moves the focus into main');
    await page.keyboard.press('g');
    await page.keyboard.press('d');
    await page.locator('[data-testid="nav-devices"][aria-current="page"]').waitFor();
    await until(async () => page.evaluate(() => document.activeElement?.tagName === 'H1' && document.activeElement.closest('main') !== null && document.activeElement.textContent.trim() === 'Devices'), {
      what: 'the focus on the Devices heading after g d',
    });

    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror') || p.startsWith('console.error')), [], 'no error in the page');

    // --- Never a blank page: when start-up throws anyway (here every Intl.Collator refuses, as
    // Intl refused "c"), the page says what failed.
    const broken = await (await browser.newContext()).newPage();
    await broken.addInitScript(() => {
      Intl.Collator = function Collator() {
        throw new RangeError('Invalid language tag: c');
      };
    });
    await broken.goto(engine.uiUrl());
    const err = broken.getByTestId('startup-error');
    await err.waitFor({ timeout: 10_000 });
    assert.match(await err.textContent(), /Flotilla could not start/);
    assert.match(await err.textContent(), /Invalid language tag: c/);
    await screenshot(broken, 'startup-error');
  } catch (e) {
    await screenshot(page, 'failure-lang-c').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
