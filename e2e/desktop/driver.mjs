// Desktop end-to-end test: drives the real flotilla-desktop binary through tauri-driver
// (WebKitWebDriver underneath) with plain W3C WebDriver calls — no npm packages.
//
//   node e2e/desktop/driver.mjs --app PATH --port N --data-dir DIR --screenshots DIR
//
// Started by e2e/desktop/run.sh, which provides Xvfb, tauri-driver and the app binary.
// Prints one line per step, the cold start, and `N passed, M failed`; exits non-zero on failure.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const k of ['app', 'port', 'data-dir', 'screenshots']) {
  if (!args[k]) {
    console.error(`driver.mjs: --${k} is required`);
    process.exit(2);
  }
}
const DRIVER = `http://127.0.0.1:${args.port}`;
const SHOTS = args.screenshots;
const DATA = args['data-dir'];
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
/// The demo fleet's size (`flotilla-desktop --demo`, as `flotilla serve --demo`).
const DEMO_DEVICES = 48;
/// How long the demo rollout may take (48 devices in 4 waves, 2 s polls, 1 s reboots).
const ROLLOUT_LIMIT_MS = Number(process.env.E2E_ROLLOUT_TIMEOUT_MS || 180_000);
mkdirSync(SHOTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function wd(method, path, body) {
  const res = await fetch(`${DRIVER}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method} ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  }
  if (!res.ok || (json.value && json.value.error)) {
    const v = json.value || {};
    throw new Error(`${method} ${path}: ${v.error || res.status}: ${(v.message || text).slice(0, 300)}`);
  }
  return json.value;
}

let session = null;
const s = (path) => `/session/${session}${path}`;

/** Runs `fn(...args)` in the page and returns its value. */
const js = (fn, ...a) => wd('POST', s('/execute/sync'), { script: `return (${fn}).apply(null, arguments)`, args: a });

/** Polls `probe` until it returns something truthy; throws `what` after `limit` ms. */
async function until(what, probe, limit = 15_000, every = 100) {
  const deadline = performance.now() + limit;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${limit} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await sleep(every);
  }
}

const tid = (id) => `[data-testid="${id}"]`;

/** Is an element with this test id on screen (rendered with a size)? */
const visible = (id) =>
  js((sel) => {
    const el = document.querySelector(sel);
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  }, tid(id));

const count = (id) => js((sel) => document.querySelectorAll(sel).length, tid(id));

/** The text of the first element with this test id, whitespace collapsed. */
const text = (id) => js((sel) => (document.querySelector(sel)?.textContent ?? '').replace(/\s+/g, ' ').trim(), tid(id));

async function click(id) {
  const el = await until(`${id} to be clickable`, async () => {
    const found = await wd('POST', s('/elements'), { using: 'css selector', value: tid(id) });
    for (const f of found) {
      const e = f[ELEMENT];
      if ((await wd('GET', s(`/element/${e}/displayed`))) && (await wd('GET', s(`/element/${e}/enabled`)))) return e;
    }
    return null;
  });
  await wd('POST', s(`/element/${el}/click`), {});
}

async function shot(name) {
  const png = await wd('GET', s('/screenshot'));
  const file = join(SHOTS, `desktop-${name}.png`);
  writeFileSync(file, Buffer.from(png, 'base64'));
  return file;
}

/** The engine's admin API, found through the data dir like the CLI finds it. */
async function api(path) {
  const runtime = JSON.parse(readFileSync(join(DATA, 'runtime.json'), 'utf8'));
  const token = readFileSync(join(DATA, 'admin-token'), 'utf8').trim();
  const res = await fetch(`${runtime.admin_url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
  return res.json();
}

/** A list from the admin API (a bare array, or an object holding it under `key`). */
const apiList = async (path, key) => {
  const v = await api(path);
  return Array.isArray(v) ? v : v[key] || [];
};

/**
 * What the overview should count, by the engine: every device, and how many of them run another
 * version than the one firmware of their model (the demo imports one firmware, 2.0.0 for model
 * "demo").
 */
async function fleetByEngine() {
  const devices = await apiList('/api/v1/devices', 'devices');
  const library = await apiList('/api/v1/firmware', 'firmware');
  const fws = library.filter((f) => !f.archived);
  const fw = fws.find((f) => f.version === '2.0.0');
  if (!fw) throw new Error(`the demo firmware 2.0.0 is not listed: ${fws.map((f) => f.version).join(', ')}`);
  const outdated = devices.filter((d) => d.model === fw.model && d.version !== fw.version).length;
  return { devices, library, fws, fw, outdated };
}

/** Waits until the overview tile `id` reads `want` at its start ("48 devices", "0 outdated"…). */
const tileSays = (id, want) =>
  until(`the overview's ${id} to say “${want}”`, async () => {
    const t = await text(id);
    return t.startsWith(want) ? t : null;
  });

/** Opens a view from the navigation and waits until one of `ready` (test ids) shows. */
async function view(nav, ...ready) {
  await click(`nav-${nav}`);
  await until(`the ${nav} view (${ready.join(' or ')})`, async () => {
    for (const id of ready) if (await visible(id)) return true;
    return false;
  });
}

// ---------------------------------------------------------------------------------------------

const results = [];
let fatal = false;

async function step(name, fn) {
  if (fatal) {
    results.push({ name, ok: false, detail: 'not run (an earlier step failed)' });
    console.log(`FAIL ${name}: not run (an earlier step failed)`);
    return;
  }
  const t = performance.now();
  try {
    const detail = (await fn()) ?? '';
    results.push({ name, ok: true, detail });
    console.log(`ok   ${name} (${Math.round(performance.now() - t)} ms)${detail ? ` — ${detail}` : ''}`);
  } catch (e) {
    results.push({ name, ok: false, detail: e.message });
    console.log(`FAIL ${name}: ${e.message}`);
    if (session) await shot(`failure-${name.replace(/\W+/g, '-')}`).catch(() => {});
  }
}

/** Like `step`, but nothing after it can run when it fails. */
async function essential(name, fn) {
  await step(name, fn);
  if (!results.at(-1).ok) fatal = true;
}

/** Everything on loopback, on ports the system picks. */
const engineArgs = [
  '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--admin', '127.0.0.1:0',
  '--mqtt-listen', '127.0.0.1:0', '--mqtt-tls-listen', '127.0.0.1:0', '--no-mdns',
];
const appArgs = ['--data-dir', DATA, '--demo', '--demo-failures', process.env.E2E_DEMO_FAILURES ?? '0', ...engineArgs];

let coldStartMs = null;
let rolloutId = null;

// `--cold-starts N`: only measure N cold starts (each a fresh data dir, no demo): each, the worst
// and the median, with the load average before each start.
if (args['cold-starts']) {
  const n = Number(args['cold-starts']);
  const times = [];
  for (let i = 0; i < n; i++) {
    const dir = join(DATA, `cold-${i}`);
    mkdirSync(dir, { recursive: true });
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
    const t0 = performance.now();
    const created = await wd('POST', '/session', {
      capabilities: { alwaysMatch: { 'tauri:options': { application: args.app, args: ['--data-dir', dir, ...engineArgs] } } },
    });
    session = created.sessionId;
    await until('the UI navigation', () => visible('nav-devices'), 30_000, 20);
    times.push(Math.round(performance.now() - t0));
    await wd('DELETE', s(''));
    session = null;
    console.log(`cold start ${i + 1}: ${times.at(-1)} ms (load average ${load} before it)`);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`cold start of ${n}: worst ${sorted.at(-1)} ms, median ${sorted[Math.floor(n / 2)]} ms (spawn → navigation visible)`);
  process.exit(0);
}

await essential('window opens', async () => {
  const t0 = performance.now();
  const created = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { 'tauri:options': { application: args.app, args: appArgs } } },
  });
  session = created.sessionId;
  await until('the UI navigation', () => visible('nav-devices'), 30_000, 20);
  coldStartMs = Math.round(performance.now() - t0);
  const title = await wd('GET', s('/title'));
  // run.sh starts the app under C.UTF-8, where WebKitGTK reports the language "C": the window
  // must render all the same (an Intl call rejecting "C" once left it blank).
  const lang = await js(() => navigator.language);
  if (process.env.LANG === 'C.UTF-8' && !/^c$/i.test(lang)) throw new Error(`expected the C locale, the page says ${lang}`);
  return `cold start ${coldStartMs} ms (spawn → navigation visible), title “${title}”, language “${lang}”`;
});

await essential('demo fleet devices appear', async () => {
  await view('devices', 'devices-table', 'devices-empty');
  // The demo fleet is 48 devices: exactly those, none twice, in the engine and on the page.
  const devices = await until('48 devices in the inventory', async () => {
    const list = await api('/api/v1/devices');
    const n = (Array.isArray(list) ? list : list.devices || []).length;
    if (n > DEMO_DEVICES) throw new Error(`${n} devices in the inventory, the demo fleet is ${DEMO_DEVICES}`);
    return n === DEMO_DEVICES ? n : 0;
  }, 30_000, 250);
  const shown = await until(`the page to count ${DEMO_DEVICES} devices`, async () => {
    const t = await text('devices-count');
    return t.startsWith(`${DEMO_DEVICES} devices ·`) ? t : null;
  }, 30_000);
  // The table renders the rows in view (at least the first ten), each a different device.
  const macs = await until('device rows', async () => {
    const m = await js((sel) => [...document.querySelectorAll(sel)].map((r) => r.dataset.mac), tid('device-row'));
    return m.length >= 10 ? m : null;
  }, 30_000);
  if (new Set(macs).size !== macs.length) throw new Error(`a device shown twice: ${macs.join(', ')}`);
  await shot('devices');
  return `${macs.length} rows shown, ${devices} devices in the inventory, “${shown}”`;
});

await step('overview shows the fleet', async () => {
  await view('overview', 'tile-devices');
  // Before the rollout: every demo device counted, all of them outdated (they run 1.0.0 and the
  // library has 2.0.0 for their model), one firmware, no rollout in progress.
  const { devices, library, outdated } = await fleetByEngine();
  if (outdated !== devices.length) throw new Error(`${outdated} of ${devices.length} demo devices are outdated by the engine's list, not all`);
  await tileSays('tile-devices', `${devices.length} devices`);
  const tile = await tileSays('tile-outdated', `${outdated} outdated`);
  await tileSays('tile-firmware', `${library.length} firmware`);
  await tileSays('tile-rollouts', '0 rollouts in progress');
  await shot('overview');
  return `${devices.length} devices; “${tile}”`;
});

await step('firmware view lists the demo firmware', async () => {
  await view('firmware', 'firmware-table');
  // One row per firmware in the library, the demo's by its id with its version, model and a
  // usable status.
  const { fws, fw } = await fleetByEngine();
  await until(`${fws.length} firmware rows`, async () => (await count('firmware-row')) === fws.length);
  const cells = await js(
    (sel) => [...(document.querySelector(sel)?.children ?? [])].map((c) => c.textContent.replace(/\s+/g, ' ').trim()),
    `${tid('firmware-row')}[data-id="${fw.id}"]`,
  );
  const [version, model, , , , , , , status] = cells;
  if (version !== fw.version || model !== fw.model || status !== 'usable') {
    throw new Error(`the demo firmware's row says version “${version}”, model “${model}”, status “${status}”; the engine: ${fw.version}, ${fw.model}, usable`);
  }
  await shot('firmware');
  return `${fws.length} row(s); ${version} for ${model}, ${status}`;
});

await essential('a rollout started from the UI completes', async () => {
  await view('rollouts', 'new-rollout');
  await click('new-rollout');
  await until('the rollout wizard', () => visible('wizard'));
  await shot('rollout-wizard');
  for (let i = 0; i < 8 && !(await visible('wizard-start')); i++) {
    await click('wizard-next');
    await sleep(150);
  }
  await click('wizard-start');
  await until('the live rollout', () => visible('rollout-live'), 15_000);
  // The live view's address names the rollout the later steps check.
  const hash = await until('the rollout in the address', async () => (await js(() => location.hash)).match(/rollouts\/(\d+)$/));
  rolloutId = Number(hash[1]);
  let sawProgress = false;
  let resumed = 0;
  let unexpectedPause = null;
  const state = await until(
    'the rollout to complete',
    async () => {
      const st = (await js((sel) => document.querySelector(sel)?.dataset.state ?? '', tid('rollout-state'))) || '';
      if (!sawProgress && st.includes('running')) {
        const r = (await apiList('/api/v1/rollouts', 'rollouts')).find((x) => x.id === rolloutId);
        if (r && r.counts.succeeded >= 5) {
          sawProgress = true;
          await shot('rollout-live');
        }
      }
      if (st.includes('paused') && Number(process.env.E2E_DEMO_FAILURES ?? 0) === 0) {
        // No demo device fails: nothing may trip a gate (the step fails below, not at the limit).
        const r = (await apiList('/api/v1/rollouts', 'rollouts')).find((x) => x.id === rolloutId);
        unexpectedPause = r?.pause_reason || st;
        return st;
      }
      if (st.includes('paused') && resumed < 10) {
        // A gate tripped (failing demo devices): acknowledge and go on, as a technician would.
        if (resumed === 0) await shot('rollout-paused');
        await click('rollout-resume');
        resumed++;
      }
      return st.includes('completed') ? st : null;
    },
    ROLLOUT_LIMIT_MS,
    500,
  );
  if (unexpectedPause) {
    await shot('rollout-paused');
    throw new Error(`the rollout paused with no failing demo device: ${unexpectedPause}`);
  }
  if (!sawProgress) await shot('rollout-live');
  await shot('rollout-completed');
  return `state “${state}”${resumed ? `, resumed ${resumed}×` : ''}`;
});

await step('engine agrees the rollout completed', async () => {
  const r = (await apiList('/api/v1/rollouts', 'rollouts')).find((x) => x.id === rolloutId);
  if (!r || r.state !== 'completed') throw new Error(`rollout ${rolloutId}'s state is ${r?.state}`);
  // The live view's numbers are the engine's; with no failing demo device, every one updated.
  const c = r.counts;
  const want = JSON.stringify({ succeeded: String(c.succeeded), failed: String(c.failed + c.timed_out) });
  await until(`the live view to count ${want}, as the engine does`, async () => {
    const shown = { succeeded: await text('rollout-count-succeeded'), failed: await text('rollout-count-failed') };
    return JSON.stringify(shown) === want;
  });
  if (Number(process.env.E2E_DEMO_FAILURES ?? 0) === 0 && c.succeeded !== c.total) {
    throw new Error(`${c.succeeded} of ${c.total} devices updated with no failing demo device`);
  }
  return `${c.succeeded}/${c.total} devices updated, as the live view shows`;
});

await step('the UI may write an export through the shell, absolute paths only', async () => {
  // What the UI's Export buttons do after the native save dialog (which WebDriver cannot drive).
  const file = join(DATA, 'report.csv');
  const invoke = (path) =>
    wd('POST', s('/execute/async'), {
      script: `const done = arguments[arguments.length - 1];
        window.__TAURI_INTERNALS__.invoke('write_text_file', { path: arguments[0], contents: 'mac,state\\n' })
          .then(() => done('ok'), (e) => done('error: ' + e));`,
      args: [path],
    });
  const ok = await invoke(file);
  if (ok !== 'ok') throw new Error(`writing ${file}: ${ok}`);
  if (readFileSync(file, 'utf8') !== 'mac,state\n') throw new Error(`${file} has other contents`);
  const refused = await invoke('report.csv');
  if (!/must be absolute/.test(refused)) throw new Error(`a relative path was not refused: ${refused}`);
  return 'written; relative path refused';
});

await step('events view', async () => {
  await view('events', 'events-table');
  // The audit log has the rollout's completion, about this rollout.
  const ids = await until('the rollout.completed event', async () => {
    const found = await js(
      (sel) => [...document.querySelectorAll(sel)].map((r) => JSON.parse(r.querySelector('[data-testid="event-raw"]')?.textContent || '{}').id),
      `${tid('event-row')}[data-kind="rollout.completed"]`,
    );
    return found.length ? found : null;
  });
  if (!ids.includes(rolloutId)) throw new Error(`rollout.completed is listed for rollout(s) ${ids.join(', ')}, not ${rolloutId}`);
  await shot('events');
  return `rollout.completed for rollout ${rolloutId}`;
});

await step('settings view', async () => {
  await view('settings', 'settings-engine');
  // What a technician checks there: where the data lives, and the key devices must trust.
  const dir = await until('the data directory', async () => (await text('settings-data-dir')) || null);
  if (dir !== DATA) throw new Error(`the settings view says the data directory is ${dir}, not ${DATA}`);
  const key = await api('/api/v1/keys/public');
  const shown = await until('the site signing key', async () => ((await text('settings-signing-key')).includes(key.public_key_hex) ? true : null));
  await shot('settings');
  return `data dir ${dir}; key ${key.key_id} shown (${shown})`;
});

await step('overview after the rollout', async () => {
  await view('overview', 'tile-devices');
  // The tiles agree with the engine: every device counted; outdated = the devices of the
  // rollout's model not on its version (the demo has one firmware), at most those it did not update.
  const { devices, library, outdated } = await fleetByEngine();
  const r = (await apiList('/api/v1/rollouts', 'rollouts')).find((x) => x.id === rolloutId);
  if (!r) throw new Error(`rollout ${rolloutId} is not listed`);
  if (outdated > r.counts.total - r.counts.succeeded) {
    throw new Error(`${outdated} devices outdated after a rollout that updated ${r.counts.succeeded} of ${r.counts.total}`);
  }
  await tileSays('tile-devices', `${devices.length} devices`);
  const tile = await tileSays('tile-outdated', `${outdated} outdated`);
  await tileSays('tile-firmware', `${library.length} firmware`);
  await tileSays('tile-rollouts', '0 rollouts in progress');
  await shot('overview-after');
  return `${devices.length} devices; “${tile}”`;
});

if (session) await wd('DELETE', s('')).catch(() => {});

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
if (coldStartMs !== null) console.log(`cold start: ${coldStartMs} ms`);
console.log(`screenshots: ${SHOTS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
