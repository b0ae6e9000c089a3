// Display formatting shared by the views.

/**
 * A BCP 47 tag from what a platform reports as its language, or null for "no language": POSIX
 * names (`en_US.UTF-8`, `de_DE@euro`) lose their codeset and modifier and get a hyphen; `C` and
 * `POSIX` (WebKitGTK under `LANG=C.UTF-8` reports `c`) mean none.
 */
export function localeTag(raw: string | null | undefined): string | null {
  const s = (raw ?? '').trim().replace(/[.@].*$/, '').replace(/_/g, '-');
  if (!s || /^(c|posix)$/i.test(s)) return null;
  return s;
}

/**
 * The first of `candidates` that every Intl service the UI uses supports, canonicalised, else
 * `en-US`. WebKitGTK started with `LANG=C` (usual on servers and fresh installs) reports the
 * language `c`, which Intl rejects with a RangeError: every number, date and sorted text the UI
 * shows goes through this locale instead of the platform's.
 */
export function pickLocale(candidates: readonly (string | null | undefined)[]): string {
  for (const c of candidates) {
    const tag = localeTag(c);
    if (!tag) continue;
    try {
      const [canonical] = Intl.getCanonicalLocales(tag);
      if (
        canonical &&
        Intl.NumberFormat.supportedLocalesOf([canonical]).length &&
        Intl.DateTimeFormat.supportedLocalesOf([canonical]).length &&
        Intl.Collator.supportedLocalesOf([canonical]).length
      )
        return canonical;
    } catch {
      // not a tag Intl knows: try the next
    }
  }
  return 'en-US';
}

/** What the platform says its languages are; nothing when it cannot say (or throws). */
function platformLanguages(): (string | undefined)[] {
  try {
    if (typeof navigator === 'undefined') return [];
    return [...(navigator.languages ?? []), navigator.language];
  } catch {
    return [];
  }
}

/** The locale of every number, date and sorted text in the UI (never the platform's directly). */
export const LOCALE: string = pickLocale(platformLanguages());

// One collator: String#localeCompare with options builds one per call, far too slow for 10,000 rows.
const collator = new Intl.Collator(LOCALE, { numeric: true, sensitivity: 'base' });

/** Compares two texts for sorting, in LOCALE: case-insensitive, digits by value (`n2` < `n10`). */
export function compareText(a: string, b: string): number {
  return collator.compare(a, b);
}

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

/** The text with its first letter upper-case (a phrase made into a sentence). */
export function capitalise(t: string): string {
  return t.charAt(0).toUpperCase() + t.slice(1);
}

export function plural(n: number, one: string, many = one + 's'): string {
  return `${num(n)} ${n === 1 ? one : many}`;
}

export const FAMILY_LABEL: Record<string, string> = {
  native: 'Native',
  tasmota: 'Tasmota',
  shelly: 'Shelly',
  arduino: 'ArduinoOTA',
  esphome: 'ESPHome',
  unknown: 'Unknown',
};

/** A device's family as people name it, with its generation: "Shelly Gen2", "Tasmota". */
export function familyName(family: string, generation?: number | null): string {
  const name = FAMILY_LABEL[family] ?? family;
  return generation ? `${name} Gen${generation}` : name;
}

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

const clockFmt = new Intl.DateTimeFormat(LOCALE, { hour: '2-digit', minute: '2-digit' });
const dayClockFmt = new Intl.DateTimeFormat(LOCALE, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

/**
 * A moment as a local clock time people read off a wall clock: `10:42` today, `Tue 3 Mar, 10:42`
 * on another day. `—` when there is none.
 */
export function clock(at: string | number | null | undefined, now = Date.now()): string {
  if (at === null || at === undefined) return '—';
  const t = typeof at === 'number' ? at : Date.parse(at);
  if (!Number.isFinite(t)) return '—';
  return new Date(t).toDateString() === new Date(now).toDateString() ? clockFmt.format(t) : dayClockFmt.format(t);
}

/**
 * A length of time as the engine says it (`human_span`): `45 s`, `4 min`, `2 h 10 min`; `—` when
 * unknown.
 */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor((s + 30) / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** How far away a moment is: `in 4 min`, `now`, or `4 min ago` once past. */
export function fromNow(at: string | number | null | undefined, now = Date.now()): string {
  if (at === null || at === undefined) return '—';
  const t = typeof at === 'number' ? at : Date.parse(at);
  if (!Number.isFinite(t)) return '—';
  const d = t - now;
  if (Math.abs(d) < 5000) return 'now';
  // Past two days, hours stop being what people count.
  const span = Math.abs(d) >= 48 * 3600_000 ? `${Math.round(Math.abs(d) / 86400_000)} days` : duration(Math.abs(d));
  return d > 0 ? `in ${span}` : `${span} ago`;
}

/** A rate as the engine writes it (`fmt_rate`): one decimal below 10 (`3.2`), none above (`42`). */
export function rate(n: number): string {
  const d = n < 10 ? 1 : 0;
  return n.toLocaleString(LOCALE, { minimumFractionDigits: d, maximumFractionDigits: d });
}
