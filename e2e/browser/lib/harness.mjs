// Shared pieces of the browser tests: the real engine and simulated fleet as child processes (all
// on 127.0.0.1, ports chosen by the OS), Debian's Chromium through playwright-core, polling with
// deadlines, statistics and the printed report.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
/** debug (default) or release: which build of the binaries the tests run. */
export const PROFILE = process.env.FLOTILLA_E2E_PROFILE === 'release' ? 'release' : 'debug';
export const SHOTS = path.join(TARGET, 'e2e-screenshots');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** UI_BENCH=1: the heavy mode that produces the documented numbers (2,000 live devices). */
export const HEAVY = process.env.UI_BENCH === '1';

export const bin = (name) => path.join(TARGET, PROFILE, name);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- child processes --------------------------------------------------------------------------

const children = new Set();
// Last resort: whatever happens to the test process, no engine or fleet outlives it.
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function track(name, args, opts = {}) {
  const logPath = opts.log;
  const out = logPath ? fs.openSync(logPath, 'a') : 'ignore';
  const child = spawn(name, args, { stdio: ['ignore', out, out], ...opts.spawn });
  if (typeof out === 'number') fs.closeSync(out);
  children.add(child);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.exited.then(() => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(t);
}

/** Polls `fn` until it returns a truthy value; throws with `what` (and the last value/error) at the deadline. */
export async function until(fn, { timeout = 10_000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)?.slice(0, 500)}`);
    await sleep(interval);
  }
}

function tail(file, n = 40) {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/**
 * Starts `flotilla serve` on a fresh data dir, every listener on 127.0.0.1:0. Registers its
 * shutdown (and the data dir's removal) on `t.after`.
 */
export async function startEngine(t, { args = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flotilla-e2e-browser-'));
  const log = path.join(dir, 'engine.log');
  const proc = track(
    bin('flotilla'),
    ['serve', '--data-dir', dir, '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--mqtt-listen', '127.0.0.1:0', '--mqtt-tls-listen', '127.0.0.1:0', '--no-mdns', '--log', 'warn', ...args],
    { log },
  );
  const engine = { dir, log, proc, children: [] };
  t.after(async () => {
    for (const c of engine.children) await stop(c);
    await stop(proc);
    if (process.env.KEEP_E2E_DIR) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  });
  const rt = await until(
    () => {
      if (proc.exitCode !== null) throw new Error(`flotilla serve exited (${proc.exitCode}):\n${tail(log)}`);
      const r = JSON.parse(fs.readFileSync(path.join(dir, 'runtime.json'), 'utf8'));
      return r.pid === proc.pid && r.admin_url && r;
    },
    { timeout: 20_000, interval: 50, what: 'runtime.json of flotilla serve' },
  ).catch((e) => {
    throw new Error(`${e.message}\n${tail(log)}`);
  });
  engine.admin = rt.admin_url;
  engine.device = rt.device_url;
  engine.mqtt = rt.mqtt_url;
  engine.token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  try {
    engine.mqttCreds = JSON.parse(fs.readFileSync(path.join(dir, 'mqtt-credentials'), 'utf8'));
  } catch {
    engine.mqttCreds = null;
  }
  engine.uiUrl = (hash = '') => `${engine.admin}/#${hash ? hash + '&' : ''}token=${encodeURIComponent(engine.token)}`;
  engine.api = async (method, p, body) => {
    const headers = { Authorization: `Bearer ${engine.token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${engine.admin}/api/v1/${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
    return (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text;
  };
  engine.tail = () => tail(log);
  return engine;
}

/** Starts flotilla-sim against the engine: `pull` HTTP devices and `mqtt` MQTT devices, all on 1.0.0. */
export function startSim(engine, { pull = 0, mqtt = 0, poll = '1s', reboot = '500ms', version = '1.0.0', extra = [] } = {}) {
  const fleet = [pull && `native-pull=${pull}`, mqtt && `native-mqtt=${mqtt}`].filter(Boolean).join(',');
  const args = ['--api', engine.device, '--fleet', fleet, '--chip', 'esp32', '--model', 'demo', '--version', version, '--poll-interval', poll, '--reboot-delay', reboot, ...extra];
  if (mqtt) {
    const port = new URL(engine.mqtt).port;
    const c = engine.mqttCreds;
    const auth = c ? `${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@` : '';
    args.push('--mqtt', `mqtt://${auth}127.0.0.1:${port}`);
  }
  const log = path.join(engine.dir, 'sim.log');
  const proc = track(bin('flotilla-sim'), args, { log });
  engine.children.push(proc);
  proc.log = log;
  return proc;
}

/** Uploads a firmware file through the admin API (multipart, as the UI does); returns the Firmware. */
export async function uploadFirmware(engine, file) {
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(file)]), path.basename(file));
  const res = await fetch(`${engine.admin}/api/v1/firmware`, { method: 'POST', headers: { Authorization: `Bearer ${engine.token}` }, body: form });
  if (!res.ok) throw new Error(`firmware upload: ${res.status} ${await res.text()}`);
  return (await res.json()).firmware;
}

/** Writes a valid ESP32 image with flotilla-imagegen. */
export async function makeFirmware(dir, { version = '2.0.0', project = 'demo', size = 300_000 } = {}) {
  const out = path.join(dir, `demo-${version}.bin`);
  const p = track(bin('flotilla-imagegen'), ['--chip', 'esp32', '--version', version, '--project', project, '--size', String(size), '--out', out]);
  const { code } = await p.exited;
  if (code !== 0) throw new Error(`flotilla-imagegen exited ${code}`);
  return out;
}

// ---- browser ----------------------------------------------------------------------------------

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // Nothing but loopback: every other host name fails to resolve.
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
];

/**
 * Launches Chromium headless (a fresh profile) and opens one page; closed on `t.after`.
 * `language`: what the page's navigator.language / navigator.languages say (as a platform under
 * that LANG would report it, e.g. WebKitGTK's `c` under LANG=C.UTF-8), also passed as --lang.
 */
export async function launchBrowser(t, { viewport = { width: 1440, height: 900 }, language, acceptDialogs = false } = {}) {
  const args = language ? [...CHROMIUM_ARGS, `--lang=${language}`] : CHROMIUM_ARGS;
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  t.after(() => browser.close().catch(() => {}));
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  if (language) {
    await context.addInitScript((lang) => {
      Object.defineProperty(Navigator.prototype, 'language', { get: () => lang, configurable: true });
      Object.defineProperty(Navigator.prototype, 'languages', { get: () => Object.freeze([lang]), configurable: true });
    }, language);
  }
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // "Failed to load resource" lines are reported with their URL by the response listener.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console.error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url().replace(/token=[^&]+/, 'token=…')}`);
  });
  page.on('requestfailed', (r) => {
    // Closing the event stream on navigation is expected.
    if (!r.url().includes('/events/stream')) problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`);
  });
  t.after(() => {
    if (problems.length) console.log(`browser problems:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  });
  // Every confirm()/alert() the page shows, in order; accepted when `acceptDialogs`, else dismissed.
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void (acceptDialogs ? d.accept() : d.dismiss());
  });
  return { browser, context, page, problems, dialogs };
}

/** The text of the first element with `data-testid=id` under `scope`, whitespace collapsed. */
export async function textOf(scope, id) {
  return (await scope.getByTestId(id).first().textContent())?.replace(/\s+/g, ' ').trim();
}

/** Waits until `n` devices are online (the simulator's log named when they are not). */
export async function untilOnline(engine, n, sim) {
  await until(async () => (await engine.api('GET', 'devices')).filter((d) => d.online).length === n, {
    timeout: 30_000,
    interval: 250,
    what: `${n} simulated devices online (sim: ${sim.log})`,
  });
}

export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `browser-${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

// ---- numbers ----------------------------------------------------------------------------------

/** n, p50, p95, max of a list of numbers (nearest-rank percentiles). */
export function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  const q = (p) => (v.length ? v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] : NaN);
  return { n: v.length, p50: q(50), p95: q(95), max: v.length ? v[v.length - 1] : NaN };
}

export const fmtMs = (x) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '—');

/** Prints a table (array of row objects) as Markdown, preceded by a title, on stdout. */
export function printTable(title, rows) {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]);
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')));
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (xs) => `| ${xs.map((x, i) => x.padEnd(w[i])).join(' | ')} |`;
  const out = [`\n${title}`, line(cols), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...cells.map(line), ''];
  console.log(out.join('\n'));
}

/** Environment line for reports: cores, build profile, load average. */
export function machine() {
  const cpus = os.cpus();
  return `${cpus.length} cores (${cpus[0]?.model?.trim() ?? '?'}), ${PROFILE} build, load avg ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`;
}
