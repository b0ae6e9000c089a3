// Test 4 (functional): the one-click staged rollout the product promises. On a small simulated
// fleet (3 HTTP pull + 3 MQTT devices on 1.0.0) with firmware 2.0.0 in the library:
// - the overview's "outdated" tile opens the ready-to-start review of the firmware the engine
//   suggests (one model, one channel);
// - "Update selected…" in the devices view reviews exactly the selected devices;
// - the review's "Change settings…" opens the wizard pre-filled, every step tab open;
// - from the firmware view, "Roll it out…" then Start — exactly two clicks — starts the staged
//   rollout with the safe defaults, and the live view follows it to completed, every device on
//   2.0.0 (the API agrees).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, startSim, makeFirmware, uploadFirmware, untilOnline, launchBrowser, screenshot, until } from '../lib/harness.mjs';

const PULL = 3;
const MQTT = 3;
const N = PULL + MQTT;

test('firmware → "Roll it out…" → Start: two clicks to a staged rollout that completes', { timeout: 150_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: PULL, mqtt: MQTT, poll: '1s', reboot: '500ms' });
  await untilOnline(engine, N, sim);
  const fw = await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 200_000 }));
  const { page, problems } = await launchBrowser(t);
  const reviewReady = () => page.locator('[data-testid="review-start"]:enabled').waitFor({ timeout: 15_000 });

  try {
    // --- The overview's outdated tile: one model outdated → straight to its review.
    await page.goto(engine.uiUrl());
    await until(async () => (await page.getByTestId('tile-outdated').textContent())?.replace(/\s+/g, ' ').trim().startsWith(`${N} outdated`), { timeout: 15_000, what: `the outdated tile to count ${N}` });
    await page.getByTestId('tile-outdated').click();
    await reviewReady();
    assert.match(page.url(), /#\/rollouts\/review$/);
    assert.equal((await page.getByTestId('review-count').textContent()).trim(), `${N} devices`);
    assert.match(await page.getByTestId('review-target').textContent(), /Online devices of model demo that run a version older than 2\.0\.0/);
    // The engine's suggestion (channel-aware): the model's outdated devices on the channel they follow, online now.
    assert.match(await page.getByTestId('review-target').textContent(), /model:demo and channel:stable and outdated and online/);
    await screenshot(page, 'review-outdated');

    // --- A selection: exactly those devices.
    await page.getByTestId('nav-devices').click();
    await until(async () => (await page.getByTestId('device-row').count()) === N, { what: `${N} device rows` });
    const picked = await page.getByTestId('device-row').evaluateAll((rs) => rs.slice(0, 2).map((r) => r.dataset.mac));
    for (let i = 0; i < 2; i++) await page.getByTestId('device-select').nth(i).check();
    await page.getByTestId('bulk-rollout').click();
    await reviewReady();
    assert.equal((await page.getByTestId('review-count').textContent()).trim(), '2 devices');
    assert.match(await page.getByTestId('review-target').textContent(), new RegExp(`device:${picked.join(',')}`));

    // --- "Change settings…": the wizard with the same spec, every step tab open at once.
    await page.getByTestId('review-change').click();
    await page.getByTestId('wizard').waitFor();
    await until(async () => page.getByTestId('wizard-step-4').isEnabled(), { what: 'the wizard’s review tab to open' });
    await page.getByTestId('wizard-step-4').click();
    await page.getByTestId('wizard-review').waitFor();
    assert.match(await page.getByTestId('wizard-review').textContent(), new RegExp(`device:${picked.join(',')}`));
    await until(async () => (await page.getByTestId('wizard-targeted-count').textContent().catch(() => ''))?.trim() === '2', { what: 'the wizard preview to target 2 devices' });

    // --- The one-click path: firmware → "Roll it out…" → Start.
    await page.getByTestId('nav-firmware').click();
    await page.locator(`[data-testid="firmware-row"][data-id="${fw.id}"]`).waitFor();
    await page.evaluate(() => {
      window.__clicks = 0;
      document.addEventListener('click', (e) => e.isTrusted && window.__clicks++, true);
    });
    const rollIt = page.locator(`[data-testid="firmware-row"][data-id="${fw.id}"] [data-testid="firmware-rollout"]`);
    assert.equal((await rollIt.textContent()).trim(), 'Roll it out…');
    await rollIt.click(); // 1
    await reviewReady();
    assert.equal((await page.getByTestId('review-count').textContent()).trim(), `${N} devices`);
    assert.equal((await page.getByTestId('review-waves').textContent()).trim(), '1 device first, then 2, then 3');
    const safety = await page.getByTestId('review-safety').textContent();
    assert.match(safety, /more than 10 % of a wave fail/);
    assert.match(safety, /90 % of a wave succeeded/);
    assert.match(await page.getByTestId('review-skipped').textContent(), /none/);
    await screenshot(page, 'review-firmware');
    await page.getByTestId('review-start').click(); // 2
    await page.getByTestId('rollout-live').waitFor();
    assert.equal(await page.evaluate(() => window.__clicks), 2, 'two clicks from the firmware view to a started rollout');
    await until(() => /#\/rollouts\/\d+$/.test(page.url()), { what: 'the rollout URL' });
    const id = Number(page.url().match(/#\/rollouts\/(\d+)$/)[1]);

    const created = await engine.api('GET', `rollouts/${id}`);
    assert.equal(created.rollout.spec.target, 'model:demo and outdated and online');
    assert.deepEqual(created.rollout.spec.waves, [{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }]);
    assert.deepEqual(created.rollout.spec.max_failures, { percent: 10 });
    assert.notEqual(created.rollout.state, 'draft', 'Start started it');

    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 90_000 });
    await until(async () => (await page.getByTestId('rollout-count-succeeded').textContent()).trim() === String(N), { what: `the live view to count ${N} succeeded` });
    assert.equal((await page.getByTestId('rollout-count-failed').textContent()).trim(), '0');
    await screenshot(page, 'one-click-completed');
    const done = await engine.api('GET', `rollouts/${id}`);
    assert.equal(done.rollout.state, 'completed');
    assert.ok(done.jobs.length === N && done.jobs.every((j) => j.state === 'succeeded'), 'the API agrees: every job succeeded');
    const devices = await engine.api('GET', 'devices');
    assert.equal(devices.length, N);
    assert.ok(devices.every((d) => d.version === '2.0.0'), 'every device runs 2.0.0');

    // --- Nothing is outdated any more: the tile's review says so.
    await page.getByTestId('nav-overview').click();
    // Anchored: "10 outdated" contains "0 outdated" too.
    await until(async () => /^0 outdated/.test((await page.getByTestId('tile-outdated').textContent())?.replace(/\s+/g, ' ').trim()), { timeout: 15_000, what: 'the outdated tile at 0' });
    await page.getByTestId('tile-outdated').click();
    await page.getByTestId('review-nothing').waitFor();
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, 'failure-one-click').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
