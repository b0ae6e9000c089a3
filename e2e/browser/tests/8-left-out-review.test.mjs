// Test 8 (functional): nothing is left out silently. 4 simulated devices stay online, 2 others
// (another simulated fleet, over MQTT) go offline, all 6 on 1.0.0 with firmware 2.0.0 in the library. The
// overview's "outdated" tile counts all 6; its review updates the 4 online ones (the engine's
// suggestion, online devices only) and lists the 2 others as left out by the target, by name,
// with the engine's reason ("offline (last seen …)"). "Change settings…" opens the wizard, whose
// preview lists them too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEngine, startSim, stop, makeFirmware, uploadFirmware, launchBrowser, screenshot, until } from '../lib/harness.mjs';

const ONLINE = 4;
const GONE = 2;

test('the outdated tile’s review lists the devices its target leaves out, and why', { timeout: 150_000 }, async (t) => {
  const engine = await startEngine(t);
  const sim = startSim(engine, { pull: ONLINE, poll: '1s', reboot: '500ms' });
  // MQTT devices: stopping their fleet ends their broker sessions, so they go offline at once
  // (a pull device is shown offline only after three missed check-ins, at least a minute).
  const far = startSim(engine, { mqtt: GONE, poll: '1s', reboot: '500ms', extra: ['--seed', '2', '--address-block', '21', '--id-prefix', 'far'] });
  await until(async () => (await engine.api('GET', 'devices')).filter((d) => d.online).length === ONLINE + GONE, {
    timeout: 30_000,
    interval: 250,
    what: `${ONLINE + GONE} simulated devices online (sim: ${sim.log})`,
  });
  const farMacs = (await engine.api('GET', 'devices')).filter((d) => d.device_id?.startsWith('far-')).map((d) => d.mac);
  assert.equal(farMacs.length, GONE);
  await stop(far);
  await until(async () => (await engine.api('GET', 'devices')).filter((d) => !d.online).length === GONE, {
    timeout: 30_000,
    interval: 500,
    what: `the ${GONE} devices of the stopped fleet offline`,
  });
  await uploadFirmware(engine, await makeFirmware(engine.dir, { version: '2.0.0', project: 'demo', size: 200_000 }));
  const devices = await engine.api('GET', 'devices');
  const nameOf = (mac) => {
    const d = devices.find((x) => x.mac === mac);
    return d?.name || d?.device_id || mac;
  };

  const { page, problems } = await launchBrowser(t);

  try {
    await page.goto(engine.uiUrl());
    await until(async () => (await page.getByTestId('tile-outdated').textContent())?.includes(`${ONLINE + GONE} outdated`), { timeout: 15_000, what: 'the outdated tile to count every outdated device' });
    await page.getByTestId('tile-outdated').click();
    await page.locator('[data-testid="review-start"]:enabled').waitFor({ timeout: 15_000 });
    assert.equal((await page.getByTestId('review-count').textContent()).trim(), `${ONLINE} devices`);
    assert.match(await page.getByTestId('review-target').textContent(), /model:demo and channel:stable and outdated and online/);

    // The left-out devices, by name, with the engine's reason.
    const leftOut = (await page.getByTestId('review-left-out').textContent()).replace(/\s+/g, ' ');
    assert.match(leftOut, /Left out by the target/);
    for (const mac of farMacs) assert.ok(leftOut.includes(nameOf(mac)), `${nameOf(mac)} is listed as left out: ${leftOut}`);
    const groups = await page.getByTestId('review-left-out-group').allTextContents();
    assert.equal(groups.length, 1, `one reason for both: ${groups.join(' | ')}`);
    assert.match(groups[0], /— offline \(last seen .*\)/);
    const preview = await engine.api('POST', 'rollouts/preview', { firmware: '2.0.0', target: 'model:demo and channel:stable and outdated and online', start: false });
    assert.deepEqual(preview.left_out.map((x) => x.mac).sort(), [...farMacs].sort(), 'the engine agrees on who is left out');
    assert.match((await page.getByTestId('review-skipped').textContent()).trim(), /^none$/);
    await screenshot(page, 'review-left-out');

    // --- The wizard, from "Change settings…": its preview lists them too.
    await page.getByTestId('review-change').click();
    await page.getByTestId('wizard').waitFor();
    const wizLeft = page.getByTestId('wizard-left-out');
    await wizLeft.waitFor({ timeout: 15_000 });
    await wizLeft.locator('summary').first().click();
    const wizText = (await wizLeft.textContent()).replace(/\s+/g, ' ');
    assert.match(wizText, /offline/);
    for (const mac of farMacs) assert.ok(wizText.includes(nameOf(mac)), `the wizard lists ${nameOf(mac)}: ${wizText}`);
    assert.equal((await page.getByTestId('wizard-targeted-count').textContent()).trim(), String(ONLINE));
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, 'failure-left-out').catch(() => {});
    console.log(`engine log (tail):\n${engine.tail().replace(/^/gm, '  ')}`);
    throw e;
  }
});
