// Test 7 (functional): a device that never comes back. 4 simulated HTTP devices, one of which
// vanishes after its reboot (no check-in ever again); one wave, 5-minute steps, one retry: without
// a person, the rollout would wait for it for up to 10 minutes. The live view must say what the
// rollout waits on (the engine's `waiting`: the device, its state, deadline, retries left, when it
// was last heard from, and until when at the latest), offer Skip on it (and on its row in the
// device list), ask before skipping in words that say what a skip does, and finish at once:
// "completed · 1 not updated", the device skipped, its version "1.0.0 → not heard from since".

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, startSim, makeFirmware, uploadFirmware, untilOnline, launchBrowser, textOf, screenshot, until } from '../lib/harness.mjs';

const N = 4;

test('a device that never comes back: the waiting panel names it, Skip lets the rollout finish', { timeout: 180_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: N, poll: '1s', reboot: '500ms', extra: ['--fail', 'vanish=25%'] });
  await untilOnline(engine, N, sim);
  await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 200_000 }));
  const created = await engine.api('POST', 'rollouts', {
    firmware: '2.0.0',
    target: 'model:demo and outdated and online',
    name: 'pumps',
    waves: [{ percent: 100 }],
    max_failures: { percent: 100 },
    success_gate: 0,
    concurrency: N,
    step_timeout_secs: 300,
    retries: 1,
    start: true,
  });
  const id = created.rollout.id;
  const { page, problems, dialogs } = await launchBrowser(t, { acceptDialogs: true });
  const text = (id, scope = page) => textOf(scope, id);

  try {
    // --- Every device but one is done; the rollout waits for the one that vanished.
    const waiting = await until(
      async () => {
        const d = await engine.api('GET', `rollouts/${id}`);
        return d.rollout.counts.succeeded === N - 1 && d.rollout.waiting?.reason === 'devices' && d.rollout.waiting.devices.length === 1 && d;
      },
      { timeout: 60_000, interval: 250, what: 'the rollout to wait for one device only' },
    );
    const w = waiting.rollout.waiting;
    const gone = w.devices[0];
    const devices = await engine.api('GET', 'devices');
    const d = devices.find((x) => x.mac === gone.mac);
    const name = d?.name || d?.device_id || gone.mac;
    assert.ok(gone.deadline, 'the engine gives the step’s deadline');
    assert.ok(w.until, 'the engine says until when at the latest');

    await page.goto(engine.uiUrl(`/rollouts/${id}`));
    const panel = page.getByTestId('waiting');
    await panel.waitFor({ timeout: 15_000 });
    assert.equal(await panel.getAttribute('data-reason'), 'devices');
    assert.equal((await panel.locator('h2').textContent()).trim(), 'Waiting for devices');
    await until(async () => (await text('waiting-summary'))?.toLowerCase().startsWith(`wave 1 of 1 waits for 1 device: ${name}`.toLowerCase()), { what: 'the engine’s summary of the wait' });
    assert.match(await text('waiting-until'), /^The last of them times out at .* \(in \d+ min\) at the latest, retries included\.$/);
    const row = page.locator(`[data-testid="waiting-device"][data-mac="${gone.mac}"]`);
    await row.waitFor();
    const rowText = (await row.textContent()).replace(/\s+/g, ' ');
    assert.ok(rowText.includes(name), `the row names ${name}: ${rowText}`);
    assert.match(rowText, new RegExp(gone.state));
    assert.match(rowText, /times out .*\(in \d+ min\)/);
    assert.match(rowText, /1 retry left/);
    assert.match(rowText, /last heard from/);
    assert.equal(await row.getByTestId('waiting-skip').getAttribute('aria-label'), `Stop waiting for ${name}`);
    // The same device has a Skip on its row in the device list, and only unfinished devices do.
    const jobRow = page.locator(`[data-testid="job-row"][data-mac="${gone.mac}"]`);
    assert.equal(await jobRow.getByTestId('job-skip').getAttribute('aria-label'), `Skip ${name}`);
    await until(async () => (await page.locator('[data-testid="job-row"][data-state="succeeded"]').count()) === N - 1, { what: `${N - 1} succeeded rows` });
    assert.equal(await page.locator('[data-testid="job-row"][data-state="succeeded"] [data-testid="job-skip"]').count(), 0);
    assert.equal((await jobRow.locator('[role="cell"]').nth(4).textContent()).trim(), '1.0.0 → not reported yet');
    await screenshot(page, 'waiting-for-device');

    // --- Skip it: the confirm says what that does; the rollout finishes.
    await row.getByTestId('waiting-skip').click();
    await until(() => dialogs.length === 1, { what: 'the confirm before skipping' });
    assert.equal(dialogs[0], `Stop waiting for ${name}? It will not be commanded again in this rollout; if it is updating it may still finish on its own.`);
    const done = await until(
      async () => {
        const x = await engine.api('GET', `rollouts/${id}`);
        return x.rollout.state === 'completed' && x;
      },
      { timeout: 15_000, what: 'the rollout to complete once the device is skipped' },
    );
    assert.equal(done.rollout.outcome, 'some_failed', 'a device skipped by a person was not updated');
    const job = done.jobs.find((j) => j.mac === gone.mac);
    assert.equal(job.state, 'skipped');
    assert.match(job.error, /skipped by .* no longer waited on/);

    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 15_000 });
    assert.equal((await page.getByTestId('rollout-state').textContent()).trim(), 'completed · 1 not updated');
    assert.equal(await page.getByTestId('waiting').count(), 0, 'nothing is waited on any more');
    await until(async () => (await jobRow.getAttribute('data-state')) === 'skipped', { what: 'the device’s row skipped' });
    assert.equal((await jobRow.locator('[role="cell"]').nth(4).textContent()).trim(), '1.0.0 → not heard from since', 'never "1.0.0 → 1.0.0" for a device not seen again');
    assert.equal(await jobRow.getByTestId('job-skip').count(), 0);
    // The engine's summary: a device a person skipped was meant to be updated and was not.
    assert.equal(await text('rollout-summary'), `${N - 1} of ${N} succeeded · 1 skipped`);
    await screenshot(page, 'skipped-completed');
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, 'failure-vanish-skip').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
