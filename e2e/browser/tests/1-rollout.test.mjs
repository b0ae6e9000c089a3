// Test 1 (functional): a technician's whole path through the web UI, against a real
// `flotilla serve` and 20 simulated devices (10 HTTP pull, 10 MQTT): the devices appear, a
// firmware file is uploaded through the file input, inspected and imported, the wizard's default
// staged rollout is started, the live view follows it to `completed`, every device shows 2.0.0
// (and the API agrees), and the report is exported as a CSV download.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startEngine, startSim, makeFirmware, launchBrowser, screenshot, until } from '../lib/harness.mjs';

const PULL = 10;
const MQTT = 10;
const N = PULL + MQTT;

test('import by upload, default staged rollout, every device on 2.0.0, CSV report (through the UI)', { timeout: 150_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: PULL, mqtt: MQTT, poll: '1s', reboot: '500ms' });
  const fwFile = await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 300_000 });
  const { page, problems } = await launchBrowser(t);

  try {
    // --- Devices appear.
    await page.goto(engine.uiUrl());
    await page.getByTestId('nav-devices').click();
    await until(async () => (await page.getByTestId('devices-count').textContent())?.includes(`${N} devices`), {
      timeout: 30_000,
      what: `the devices view to count ${N} devices`,
    });
    await until(async () => (await page.getByTestId('device-row').count()) === N, { timeout: 5_000, what: `${N} rows in the devices table` });
    const versionsBefore = await page.getByTestId('device-row').evaluateAll((rows) => rows.map((r) => r.textContent));
    assert.ok(versionsBefore.every((x) => x.includes('1.0.0')), 'every device starts on 1.0.0');
    await screenshot(page, 'devices');

    // --- Upload, inspect, import.
    await page.getByTestId('nav-firmware').click();
    await page.getByTestId('firmware-file-input').setInputFiles(fwFile);
    const item = page.getByTestId('inspect-result');
    await item.and(page.locator('[data-state="ready"]')).waitFor({ timeout: 15_000 });
    assert.equal((await item.getByTestId('inspect-chip').textContent()).trim(), 'esp32');
    assert.equal((await item.getByTestId('inspect-version').textContent()).trim(), '2.0.0');
    await screenshot(page, 'firmware-inspect');
    await item.getByTestId('import-button').click();
    await item.and(page.locator('[data-state="imported"]')).waitFor({ timeout: 15_000 });
    await page.getByTestId('firmware-row').first().waitFor();
    assert.equal(await page.getByTestId('firmware-row').count(), 1);
    assert.match(await page.getByTestId('firmware-row').first().textContent(), /2\.0\.0/);
    await screenshot(page, 'firmware');

    // --- Wizard: accept every default.
    await page.getByTestId('nav-rollouts').click();
    await page.getByTestId('new-rollout').click();
    await page.getByTestId('wizard').waitFor();
    const option = page.getByTestId('wizard-firmware-option');
    await until(async () => (await option.count()) === 1 && (await option.locator('input[type=radio]').isChecked()), { what: 'the new firmware preselected in the wizard' });
    await page.getByTestId('wizard-next').click();
    const expr = (await page.getByTestId('wizard-target-expr').textContent()).trim();
    assert.match(expr, /model:demo/, `default target names the model: ${expr}`);
    await until(async () => (await page.getByTestId('wizard-targeted-count').textContent().catch(() => ''))?.trim() === String(N), {
      timeout: 10_000,
      what: `the wizard preview to target ${N} devices`,
    });
    await page.getByTestId('wizard-next').click();
    assert.equal(await page.getByTestId('wizard-waves').inputValue(), '1,10%,50%,100%');
    assert.equal(await page.getByTestId('wizard-max-failures').inputValue(), '10%');
    await page.getByTestId('wizard-next').click();
    await page.getByTestId('wizard-review').waitFor();
    await screenshot(page, 'wizard-review');
    const start = page.getByTestId('wizard-start');
    assert.match(await start.textContent(), new RegExp(`\\(${N}\\)`));
    await start.click();

    // --- Live view until completed.
    await page.getByTestId('rollout-live').waitFor();
    await until(() => /#\/rollouts\/\d+$/.test(page.url()), { what: 'the rollout URL' });
    const id = Number(page.url().match(/#\/rollouts\/(\d+)$/)[1]);
    await page.locator('[data-testid="rollout-state"][data-state="running"], [data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 10_000 });
    await screenshot(page, 'rollout-running');
    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 90_000 });
    await until(async () => (await page.getByTestId('rollout-percent').textContent()).trim() === '100 %', { what: 'the live view at 100 %' });
    const waves = await page.getByTestId('wave-progress').allTextContents();
    assert.equal(waves.length, 4, `four waves shown: ${waves.join(' | ')}`);
    assert.equal((await page.getByTestId('rollout-count-succeeded').textContent()).trim(), String(N), `live view counts ${N} succeeded`);
    assert.equal((await page.getByTestId('rollout-count-failed').textContent()).trim(), '0', 'live view counts no failure');
    await screenshot(page, 'rollout-completed');
    // The live view's per-device "from → to" column right after completion: every succeeded
    // device on 2.0.0, not the version it ran before (live events, then the final re-read).
    const shownVersions = await page.getByTestId('job-row').evaluateAll((rs) => rs.map((r) => `${r.dataset.mac} ${r.children[4]?.textContent?.trim()}`));
    assert.ok(shownVersions.length > 0, 'job rows shown (the list is virtualised: the visible ones)');
    assert.deepEqual(shownVersions.filter((x) => !x.endsWith('1.0.0 → 2.0.0')), [], 'the live view shows "1.0.0 → 2.0.0" for every device once completed');

    const detail = await engine.api('GET', `rollouts/${id}`);
    assert.equal(detail.rollout.state, 'completed');
    assert.equal(detail.jobs.length, N);
    assert.ok(detail.jobs.every((j) => j.state === 'succeeded'), 'the API agrees: every job succeeded');

    // --- Report: a CSV download.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
    assert.match(download.suggestedFilename(), /^rollout-\d+-2\.0\.0\.csv$/);
    const csv = fs.readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/);
    const head = csv[0].split(',');
    const rows = csv.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [head[i], v])));
    assert.equal(rows.length, N, `the report lists ${N} devices`);
    assert.equal(new Set(rows.map((r) => r.mac)).size, N);
    for (const r of rows) {
      assert.equal(r.state, 'succeeded', `${r.mac} succeeded`);
      assert.equal(r.from_version, '1.0.0');
      assert.equal(r.to_version, '2.0.0', `${r.mac} reported on 2.0.0`);
    }

    // --- Every device on 2.0.0, in the UI and in the API.
    await page.getByTestId('nav-devices').click();
    await until(
      async () => {
        const rows = await page.getByTestId('device-row').evaluateAll((rs) => rs.map((r) => r.children[6]?.querySelector('.mono')?.textContent?.trim()));
        return rows.length === N && rows.every((v) => v === '2.0.0');
      },
      { timeout: 15_000, what: 'every row of the devices table on 2.0.0' },
    );
    // Anchored: "20 outdated" contains "0 outdated" too.
    assert.match((await page.getByTestId('devices-count').textContent()).replace(/\s+/g, ' ').trim(), new RegExp(`^${N} devices · 0 outdated$`));
    await screenshot(page, 'devices-updated');
    const devices = await engine.api('GET', 'devices');
    assert.equal(devices.length, N);
    assert.ok(devices.every((d) => d.version === '2.0.0'), `the API agrees: ${devices.filter((d) => d.version !== '2.0.0').map((d) => d.mac)}`);

    // --- The other main views show what a technician checks after a rollout.
    const open = async (v) => {
      await page.getByTestId(`nav-${v}`).click();
      await page.locator(`[data-testid="nav-${v}"][aria-current="page"]`).waitFor();
    };
    const text = async (id) => (await page.getByTestId(id).first().textContent())?.replace(/\s+/g, ' ').trim();
    await open('overview');
    await until(async () => (await text('tile-devices')) === `${N} devices`, { what: `the overview counts ${N} devices` });
    assert.match(await text('tile-outdated'), /^0 outdated/);
    await screenshot(page, 'overview');
    await open('rollouts');
    await page.getByTestId('rollout-row').first().waitFor();
    assert.equal(await page.getByTestId('rollout-row').count(), 1, 'one rollout listed');
    assert.match(await text('rollout-row'), /completed/);
    await screenshot(page, 'rollouts');
    await open('events');
    await until(async () => (await page.getByTestId('event-row').allTextContents()).some((t) => /rollout\.completed/.test(t)), {
      what: 'the events view lists the rollout\'s completion',
    });
    await screenshot(page, 'events');
    await open('settings');
    await until(async () => (await text('settings-data-dir')) === engine.dir, { what: 'the settings view shows the data dir' });
    await screenshot(page, 'settings');
    assert.equal(sim.exitCode, null, 'the simulated fleet still runs');
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, 'failure').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
