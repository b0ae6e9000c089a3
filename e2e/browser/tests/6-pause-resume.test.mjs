// Test 6 (functional): a rollout that pauses itself, steered from the live view. 8 simulated
// devices (4 HTTP pull, 4 MQTT) of which a quarter cannot boot the new firmware (they roll back and
// come back on 1.0.0); waves 1,100%, pause above 10 % failures. The live view must show:
// - the paused banner with the reason as the engine recorded it, beside the numbers of now
//   ("Now: 2 of 7 failed in wave 2 of 2", the engine's wave counts), and what Resume will do (the
//   engine's `on_resume`) before it is pressed; "Retry failed and resume" on the retry button;
// - Resume continues the rollout (it completes, or pauses again and is resumed again);
// - the end: an amber "completed · 2 not updated" (never a green "completed"), waves read as the
//   engine's summary ("6 of 7 succeeded · 1 failed"), failed devices as "1.0.0 → 1.0.0" (they came
//   back on the old version), and the engine's devices/min the same before and after a reload.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, startSim, makeFirmware, uploadFirmware, untilOnline, launchBrowser, textOf, screenshot, until } from '../lib/harness.mjs';

const PULL = 4;
const MQTT = 4;
const N = PULL + MQTT;

/**
 * The engine's `JobCounts::summary` (flotilla-proto), to compare what the page shows with the
 * API's numbers: succeeded of planned (all but the devices the plan left out), then the parts that
 * are not zero; a device a person skipped counts, one the plan left out does not. Same cases as
 * the proto's and the UI's unit tests; `summary-oracle` below pins the cases where they differ
 * from the naive reading.
 */
function summary(c) {
  let out = `${c.succeeded} of ${c.total - c.excluded} succeeded`;
  for (const [n, what] of [[c.failed + c.timed_out, 'failed'], [c.in_flight, 'updating'], [c.queued, 'queued'], [c.cancelled, 'cancelled'], [c.skipped - c.excluded, 'skipped']]) {
    if (n > 0) out += ` · ${n} ${what}`;
  }
  return out;
}
const zero = { total: 0, succeeded: 0, failed: 0, timed_out: 0, in_flight: 0, queued: 0, cancelled: 0, skipped: 0, excluded: 0 };
test('summary-oracle: the copy reads counts as JobCounts::summary does', () => {
  assert.equal(summary({ ...zero, total: 10, skipped: 3, excluded: 3, succeeded: 7 }), '7 of 7 succeeded');
  assert.equal(summary({ ...zero, total: 4, skipped: 1, succeeded: 3 }), '3 of 4 succeeded · 1 skipped');
  assert.equal(summary({ ...zero, total: 19, succeeded: 18, failed: 1 }), '18 of 19 succeeded · 1 failed');
});
const rate = (r) => (r < 10 ? r.toFixed(1) : r.toFixed(0));

test('a rollout that pauses itself: the banner says why and what Resume does; Resume continues it', { timeout: 240_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: PULL, mqtt: MQTT, poll: '1s', reboot: '500ms', extra: ['--fail', 'boot=25%'] });
  await untilOnline(engine, N, sim);
  await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 200_000 }));
  const created = await engine.api('POST', 'rollouts', {
    firmware: '2.0.0',
    target: 'model:demo and outdated and online',
    name: 'boiler room',
    waves: [{ count: 1 }, { percent: 100 }],
    max_failures: { percent: 10 },
    success_gate: 90,
    // One device at a time: the rollout pauses at the first failure of a wave with devices still
    // queued, so Resume has something to continue.
    concurrency: 1,
    step_timeout_secs: 60,
    retries: 0,
    start: true,
  });
  const id = created.rollout.id;
  const { page, problems, dialogs } = await launchBrowser(t, { acceptDialogs: true });
  const text = (id) => textOf(page, id);

  try {
    await page.goto(engine.uiUrl(`/rollouts/${id}`));
    await page.getByTestId('rollout-live').waitFor();

    // --- It pauses itself: wait until the wave that paused has nothing in flight (its numbers settle).
    const paused = await until(
      async () => {
        const d = await engine.api('GET', `rollouts/${id}`);
        const r = d.rollout;
        const w = r.waves.find((x) => x.number === r.current_wave);
        return r.state === 'paused' && w && w.counts.in_flight === 0 && d;
      },
      { timeout: 90_000, interval: 250, what: 'the rollout to pause itself with its wave settled' },
    );
    const r = paused.rollout;
    assert.match(r.pause_reason, /^wave \d of 2: \d+ of \d+ devices failed \(threshold 10%\)$/);
    const w = r.waves.find((x) => x.number === r.current_wave).counts;
    const queuedAtPause = paused.jobs.filter((j) => j.state === 'queued').map((j) => j.id);
    assert.ok(queuedAtPause.length > 0, 'devices wait, queued, for the rollout to go on');

    await page.getByTestId('paused-banner').waitFor({ timeout: 15_000 });
    assert.equal(await text('paused-title'), 'Paused');
    // The reason as recorded (the counts of then), with when…
    await until(async () => (await text('pause-reason'))?.includes(r.pause_reason), { what: 'the recorded pause reason in the banner' });
    await until(async () => /^Why it paused: .*\(at .*\)$/.test(await text('pause-reason')), { what: 'when it paused, beside the reason' });
    // …beside the numbers of now, the engine's.
    const failedNow = w.failed + w.timed_out;
    await until(async () => (await text('paused-now')) === `Now: ${failedNow} of ${w.total - w.excluded} failed in wave ${r.current_wave} of ${r.wave_count}`, {
      timeout: 15_000,
      what: 'the numbers of now beside the reason',
    });
    // What Resume will do, before it is pressed: the engine's words.
    assert.match(r.on_resume, /^Resume acknowledges \d+ failed devices? \(wave \d\): (it stops|they stop) counting against the failure threshold \(10%\) and the 90% success gate, and /);
    await until(async () => (await text('on-resume'))?.endsWith(r.on_resume), { timeout: 15_000, what: 'on_resume in the banner' });
    assert.equal(await text('rollout-resume'), 'Resume');
    assert.equal(await text('rollout-retry-failed'), 'Retry failed and resume');
    assert.equal(await page.getByTestId('rollout-state').getAttribute('data-state'), 'paused');
    // Paused: no pace claimed for the time left, and the basis says why.
    assert.equal((await page.locator('[data-testid="rollout-eta"] .n').textContent()).trim(), '—');
    assert.match(await text('rollout-estimate-basis'), /paused/);
    await screenshot(page, 'paused-banner');

    // --- Resume: the rollout goes on (it may pause once more on the next failure: resume again).
    let resumes = 0;
    let pausedAt = r.paused_at;
    for (;;) {
      await page.getByTestId('rollout-resume').click();
      resumes++;
      await until(
        async () => {
          const d = await engine.api('GET', `rollouts/${id}`);
          return d.rollout.state !== 'paused' || d.rollout.paused_at !== pausedAt;
        },
        { timeout: 15_000, what: 'Resume to take effect' },
      );
      const after = await until(
        async () => {
          const d = await engine.api('GET', `rollouts/${id}`);
          return (d.rollout.state === 'completed' || d.rollout.state === 'paused') && d;
        },
        { timeout: 90_000, interval: 250, what: 'the rollout to complete (or pause again) after Resume' },
      );
      if (after.rollout.state === 'completed') break;
      assert.ok(resumes < 4, 'the rollout keeps pausing after it was resumed');
      pausedAt = after.rollout.paused_at;
      await until(async () => (await text('on-resume'))?.endsWith(after.rollout.on_resume ?? '\u0000'), { timeout: 15_000, what: 'the new pause in the banner' });
    }

    // --- The end: amber, with how many were not updated; the engine's numbers everywhere.
    const done = await engine.api('GET', `rollouts/${id}`);
    const failedIds = done.jobs.filter((j) => j.state === 'failed' || j.state === 'timed_out');
    assert.equal(done.rollout.outcome, 'some_failed');
    for (const jid of queuedAtPause) assert.notEqual(done.jobs.find((j) => j.id === jid).state, 'queued', 'Resume went on with the devices that were queued');
    assert.equal(done.rollout.counts.succeeded, N - failedIds.length);
    const badge = page.getByTestId('rollout-state');
    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 15_000 });
    assert.equal((await badge.textContent()).trim(), `completed · ${failedIds.length} not updated`);
    assert.equal(await badge.getAttribute('data-outcome'), 'some_failed');
    assert.match(await badge.getAttribute('class'), /\bwarn\b/);
    assert.doesNotMatch(await badge.getAttribute('class'), /\bok\b/, 'never a green "completed" with failures');
    await until(async () => (await page.getByTestId('wave-summary').allTextContents()).join('|') === done.rollout.waves.map((x) => summary(x.counts)).join('|'), {
      what: 'each wave read as the engine’s summary',
    });
    assert.equal(await text('rollout-summary'), summary(done.rollout.counts));
    assert.equal(await text('rollout-count-failed'), String(failedIds.length));

    // Devices that could not boot came back on 1.0.0: "1.0.0 → 1.0.0", never the target.
    await page.getByTestId('jobs-filter-state').selectOption('failed');
    await until(async () => (await page.getByTestId('job-row').count()) === failedIds.length, { what: 'the failed devices listed' });
    const versions = await page.getByTestId('job-row').evaluateAll((rs) => rs.map((r) => r.children[4]?.textContent?.trim()));
    assert.deepEqual(versions, failedIds.map(() => '1.0.0 → 1.0.0'));
    await page.getByTestId('jobs-filter-state').selectOption('all');

    // The pace is the engine's: the same after a reload.
    const perMinute = done.rollout.estimate.per_minute;
    assert.ok(perMinute > 0, 'the engine measured a pace');
    const paceShown = (await page.locator('[data-testid="rollout-throughput"] .n').textContent()).trim();
    assert.equal(paceShown, rate(perMinute));
    await screenshot(page, 'paused-then-completed');
    await page.reload();
    await page.locator('[data-testid="rollout-state"][data-state="completed"]').waitFor({ timeout: 15_000 });
    await until(async () => (await page.locator('[data-testid="rollout-throughput"] .n').textContent()).trim() === paceShown, { what: 'the same devices/min after a reload' });

    // The rollouts list and the overview say the same outcome.
    await page.getByTestId('nav-rollouts').click();
    const row = page.locator(`[data-testid="rollout-row"][data-id="${id}"]`);
    await row.waitFor();
    assert.equal((await row.getByTestId('rollout-state').textContent()).trim(), `completed · ${failedIds.length} not updated`);
    assert.equal((await row.getByTestId('rollout-summary').textContent()).trim(), summary(done.rollout.counts));
    assert.deepEqual(dialogs, [], 'Resume asks nothing: the banner said what it does');
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, 'failure-pause-resume').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
