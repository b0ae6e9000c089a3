import { describe, expect, it } from 'vitest';
import { LOCALE, num, pickLocale, plural } from './format';

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
});

describe('numbers', () => {
  it('group digits in a locale Intl accepts', () => {
    expect(() => new Intl.NumberFormat(LOCALE)).not.toThrow();
    expect(num(10000)).toBe((10000).toLocaleString(LOCALE));
    expect(plural(1, 'device')).toBe('1 device');
    expect(plural(2, 'device')).toBe('2 devices');
  });
});
