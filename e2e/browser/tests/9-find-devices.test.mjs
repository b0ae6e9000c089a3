// Test 9 (functional): finding a device that does not advertise itself. A Shelly Gen2+ device is
// played by a small HTTP server on loopback (`GET /shelly` as real firmware answers it); in the
// Devices view, "Add by address…" probes it and the row appears with its family and version;
// an address where nothing answers says so, and adds nothing; "Scan now" says mDNS is off (this engine runs without it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startEngine, launchBrowser, screenshot, until, textOf } from '../lib/harness.mjs';

const SHELLY = {
  name: null, id: 'shellyplus1pm-a8032ab40001', mac: 'A8032AB40001', slot: 0, model: 'SNSW-001P16EU', gen: 2,
  fw_id: '20231219-133934/1.1.0-g34b5d4f', ver: '1.1.0', app: 'Plus1PM', auth_en: false, auth_domain: null,
};

test('add by address probes a device and lists it; a silent address adds nothing; credentials are set and never shown', { timeout: 120_000 }, async (t) => {
  const engine = await startEngine(t, { args: ['--mqtt', 'off'] });
  const device = http.createServer((req, res) => {
    if (req.url === '/shelly') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(SHELLY));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => device.listen(0, '127.0.0.1', r));
  t.after(() => device.close());
  // A port nothing listens on: bind, note it, close.
  const silent = http.createServer();
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const silentPort = silent.address().port;
  await new Promise((r) => silent.close(r));

  const { page, problems } = await launchBrowser(t);
  try {
    await page.goto(engine.uiUrl('/devices'));
    await page.getByTestId('devices-add').click();
    await page.getByTestId('find-dialog').waitFor();

    await page.getByTestId('find-address').fill(`127.0.0.1:${silentPort}`);
    await page.getByTestId('find-probe').click();
    await until(async () => (await textOf(page, 'find-result'))?.includes('did not answer'), { timeout: 15_000, what: 'the silent address reported' });

    await page.getByTestId('find-address').fill(`127.0.0.1:${device.address().port}`);
    await page.getByTestId('find-probe').click();
    await until(async () => (await textOf(page, 'find-result'))?.includes('added as a8:03:2a:b4:00:01'), { timeout: 15_000, what: 'the Shelly added' });
    assert.match(await textOf(page, 'find-result'), /Shelly Gen2 SNSW-001P16EU 1\.1\.0/);
    await screenshot(page, '9-find-devices');

    await page.keyboard.press('Escape');
    await until(async () => (await textOf(page, 'devices-count'))?.startsWith('1 device'), { timeout: 10_000, what: 'the row listed' });
    const listed = await engine.api('GET', 'devices');
    assert.equal(listed.length, 1, 'the silent address added nothing');
    assert.deepEqual([listed[0].family, listed[0].generation, listed[0].version, listed[0].sources], ['shelly', 2, '1.1.0', ['probe']]);

    // Its page: the family with its generation, what the probe said and when, and "Probe again".
    await page.getByTestId('device-link').first().click();
    await page.getByTestId('device-detail').waitFor();
    assert.match(await textOf(page, 'device-family'), /^Shelly Gen2(?!\d)/);
    assert.match(await textOf(page, 'device-sources'), /HTTP probe: 1\.1\.0 at 127\.0\.0\.1, (just now|\d+ s ago)/);
    assert.ok(await page.getByTestId('device-probe').isVisible(), 'a vendor device can be probed again');
    await page.goBack();
    await page.getByTestId('devices-scan').waitFor();

    await page.getByTestId('devices-scan').click();
    // This engine runs with --no-mdns: the page says so rather than claiming a query was sent.
    await until(async () => (await textOf(page, 'find-result')) === 'mDNS discovery is off on this engine: add devices by address, or scan a subnet.', {
      timeout: 15_000,
      what: 'scan now answered, saying mDNS is off',
    });
    await page.keyboard.press('Escape');

    // Settings: a Tasmota login, listed without its password, then removed.
    const PASSWORD = 'Vb9-browser-web-password';
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByTestId('settings-credentials').waitFor();
    await page.getByTestId('credential-scope').selectOption('tasmota');
    await page.getByTestId('credential-username').fill('admin');
    await page.getByTestId('credential-password').fill(PASSWORD);
    await page.getByTestId('credential-save').click();
    const row = page.getByTestId('credentials-list').locator('tbody tr');
    await until(async () => (await row.count()) === 1, { timeout: 10_000, what: 'the credential listed' });
    assert.deepEqual((await row.locator('td').allTextContents()).map((c) => c.trim()), ['Tasmota', 'admin', 'set', 'Remove']);
    assert.equal(await page.getByTestId('credential-password').inputValue(), '', 'the password field is cleared');
    assert.ok(!(await page.content()).includes(PASSWORD), 'the page never shows the password');
    assert.deepEqual(await engine.api('GET', 'credentials'), [{ scope: 'tasmota', username: 'admin', password_set: true }]);
    await page.getByTestId('credential-remove-tasmota').click();
    await page.getByTestId('credentials-none').waitFor({ timeout: 10_000 });
    assert.deepEqual(await engine.api('GET', 'credentials'), []);
    assert.deepEqual(problems.filter((p) => p.startsWith('pageerror')), [], 'no uncaught error in the page');
  } catch (e) {
    await screenshot(page, '9-find-devices-failure').catch(() => {});
    throw e;
  }
});
