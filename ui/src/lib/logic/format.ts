// Display formatting shared by the views.

/**
 * The first of `candidates` that Intl accepts, else `en-US`. WebKitGTK started with `LANG=C`
 * (usual on servers and fresh installs) reports the language `c`, which Intl rejects with a
 * RangeError: every number and date the UI shows goes through this locale instead.
 */
export function pickLocale(candidates: readonly (string | undefined)[]): string {
  for (const c of candidates) {
    if (!c) continue;
    try {
      const [canonical] = Intl.getCanonicalLocales(c);
      if (canonical && new Intl.NumberFormat(canonical).resolvedOptions().locale) return canonical;
    } catch {
      // not a locale Intl knows: try the next
    }
  }
  return 'en-US';
}

export const LOCALE: string = pickLocale(
  typeof navigator === 'undefined' ? [] : [...(navigator.languages ?? []), navigator.language],
);

/** A count with the locale's digit grouping. */
export function num(n: number): string {
  return n.toLocaleString(LOCALE);
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

/** "just now", "5 s ago", "3 min ago", "2 h ago", else a date. */
export function ago(iso: string | number | null | undefined, now = Date.now()): string {
  if (iso === null || iso === undefined) return '—';
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const s = Math.round((now - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleDateString(LOCALE);
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString(LOCALE) : iso;
}

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 12) : '—';
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${num(n)} ${n === 1 ? one : many}`;
}

export const FAMILY_LABEL: Record<string, string> = {
  native: 'Native',
  tasmota: 'Tasmota',
  'shelly-gen1': 'Shelly Gen1',
  'shelly-gen2': 'Shelly Gen2+',
  'arduino-ota': 'ArduinoOTA',
  esphome: 'ESPHome',
  unknown: 'Unknown',
};

export const STATE_LABEL: Record<string, string> = {
  queued: 'queued',
  commanded: 'commanded',
  downloading: 'downloading',
  installing: 'installing',
  rebooting: 'rebooting',
  verifying: 'verifying',
  succeeded: 'succeeded',
  failed: 'failed',
  timed_out: 'timed out',
  skipped: 'skipped',
  cancelled: 'cancelled',
};

/** A time of day. */
export function timeOfDay(t: number): string {
  return new Date(t).toLocaleTimeString(LOCALE);
}
