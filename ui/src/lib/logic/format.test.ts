import { describe, expect, it, vi } from 'vitest';
import { LOCALE, compareText, dateTime, localeTag, num, pickLocale, plural, timeOfDay } from './format';

describe('pickLocale', () => {
  it('skips what Intl rejects, like WebKitGTK’s "c" under LANG=C', () => {
    expect(() => new Intl.NumberFormat('c')).toThrow(RangeError);
    expect(pickLocale(['c', undefined, 'de-DE'])).toBe('de-DE');
    expect(pickLocale(['c'])).toBe('en-US');
    expect(pickLocale([])).toBe('en-US');
  });

  it('canonicalises what it accepts', () => {
    expect(pickLocale(['EN-gb'])).toBe('en-GB');
  });

  // What platforms report under LANG=…: POSIX names, the C locale, and junk.
  const cases: [string, string][] = [
    ['c', 'en-US'],
    ['C', 'en-US'],
    ['POSIX', 'en-US'],
    ['C.UTF-8', 'en-US'],
    ['c.utf8', 'en-US'],
    ['en_US.UTF-8', 'en-US'],
    ['de_DE.UTF-8@euro', 'de-DE'],
    ['fr_FR', 'fr-FR'],
    ['en-US', 'en-US'],
    ['', 'en-US'],
    ['   ', 'en-US'],
    ['!!garbage!!', 'en-US'],
    ['xx-notalanguage-at-all-really', 'en-US'],
    ['en_US.ISO-8859-1', 'en-US'],
  ];
  for (const [given, want] of cases) {
    it(`"${given}" → ${want}, a tag every Intl service the UI uses accepts`, () => {
      const tag = pickLocale([given]);
      expect(tag).toBe(want);
      expect(() => new Intl.NumberFormat(tag).format(12345.6)).not.toThrow();
      expect(() => new Intl.DateTimeFormat(tag).format(0)).not.toThrow();
      expect(() => new Intl.Collator(tag).compare('a', 'b')).not.toThrow();
      expect(() => (1234).toLocaleString(tag)).not.toThrow();
      expect(() => new Date(0).toLocaleString(tag)).not.toThrow();
    });
  }

  it('reads POSIX names as tags, and C / POSIX as no language', () => {
    expect(localeTag('en_US.UTF-8')).toBe('en-US');
    expect(localeTag('sr_RS@latin')).toBe('sr-RS');
    expect(localeTag('C.UTF-8')).toBeNull();
    expect(localeTag('posix')).toBeNull();
    expect(localeTag(null)).toBeNull();
  });

  it('takes the first usable of the platform’s list', () => {
    expect(pickLocale(['C', 'c', 'nl_NL.UTF-8', 'en-US'])).toBe('nl-NL');
  });
});

describe('numbers, dates and sorting in LOCALE', () => {
  it('group digits in a locale Intl accepts', () => {
    expect(() => new Intl.NumberFormat(LOCALE)).not.toThrow();
    // In whatever language the platform has: grouped or not, the digits are all there.
    expect(num(10000)).toMatch(/^10\D?000$/u);
    expect(plural(1, 'device')).toBe('1 device');
    expect(plural(2, 'device')).toBe('2 devices');
  });
  it('format dates and times, and say "—" for what is not a date', () => {
    // A local time, so the test does not depend on the machine's time zone.
    const at = dateTime('2024-05-01T10:42:00');
    expect(at).toMatch(/2024/);
    expect(at).toMatch(/10\D42/);
    expect(dateTime(null)).toBe('—');
    expect(dateTime('yesterday')).toBe('yesterday');
    expect(timeOfDay(new Date('2024-05-01T10:42:00').getTime())).toMatch(/10\D42/);
  });
  it('sort text case-insensitively with digits by value', () => {
    expect(['node-10', 'Node-9', 'node-1'].sort(compareText)).toEqual(['node-1', 'Node-9', 'node-10']);
  });
});

describe('LOCALE on a platform that says its language is "c"', () => {
  it('is en-US, and everything that formats with it works', async () => {
    vi.resetModules();
    vi.stubGlobal('navigator', { language: 'c', languages: ['c'] });
    try {
      const f = await import('./format');
      expect(f.LOCALE).toBe('en-US');
      expect(f.num(1234567)).toBe('1,234,567');
      expect(f.num(10000)).toBe('10,000');
      // en-US as ICU writes it (a narrow no-break space before AM in newer ICU): a local time.
      expect(f.dateTime('2024-05-01T10:42:00')).toMatch(/^5\/1\/2024, 10:42:00\sAM$/u);
      // Three days back: a date, written the en-US way.
      const then = Date.now() - 3 * 86400_000;
      expect(f.ago(then)).toBe(new Date(then).toLocaleDateString('en-US'));
      expect(f.ago(then)).toMatch(/^\d{1,2}\/\d{1,2}\/\d{4}$/);
      // The modules that sort and count with it load too.
      await import('./devices');
      await import('./events');
      await import('./review');
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
  it('is en-US when reading the platform’s language throws', async () => {
    vi.resetModules();
    vi.stubGlobal('navigator', {
      get language(): string {
        throw new Error('no language');
      },
    });
    try {
      expect((await import('./format')).LOCALE).toBe('en-US');
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});

describe('times and rates as the engine says them', () => {
  it('says a length of time like the engine’s human_span', async () => {
    const { duration } = await import('./format');
    expect(duration(45_000)).toBe('45 s');
    expect(duration(3 * 60_000)).toBe('3 min');
    expect(duration(89_000)).toBe('1 min');
    expect(duration(90_000)).toBe('2 min');
    expect(duration(90 * 60_000)).toBe('1 h 30 min');
    expect(duration(2 * 3600_000)).toBe('2 h 0 min');
    expect(duration(-5000)).toBe('0 s');
    expect(duration(null)).toBe('—');
  });
  it('says how far a moment is, before or after now', async () => {
    const { fromNow } = await import('./format');
    const now = Date.parse('2026-03-03T10:00:00Z');
    expect(fromNow('2026-03-03T10:04:00Z', now)).toBe('in 4 min');
    expect(fromNow(now - 120_000, now)).toBe('2 min ago');
    expect(fromNow(now + 1000, now)).toBe('now');
    expect(fromNow(null, now)).toBe('—');
    expect(fromNow(now + 47 * 3600_000, now)).toBe('in 47 h 0 min');
    expect(fromNow(now + 10 * 86400_000, now)).toBe('in 10 days');
  });
  it('gives a clock time today, and the day too on another day', async () => {
    const { clock } = await import('./format');
    const now = Date.parse('2026-03-03T12:00:00');
    const today = clock(new Date('2026-03-03T10:42:00').toISOString(), now);
    expect(today).toMatch(/10.42/);
    expect(today.length).toBeLessThan(9);
    expect(clock(new Date('2026-03-05T10:42:00').toISOString(), now)).toMatch(/5.*10.42|10.42.*5/);
    expect(clock(null, now)).toBe('—');
  });
  it('writes a pace with one decimal below 10, none above (fmt_rate)', async () => {
    const { rate } = await import('./format');
    expect(rate(3.25)).toBe('3.3');
    expect(rate(3)).toBe('3.0');
    expect(rate(42.4)).toBe('42');
  });
});
