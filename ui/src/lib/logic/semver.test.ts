import { describe, expect, it } from 'vitest';
import { compareVersions, parseSemver, versionSort } from './semver';

describe('compareVersions', () => {
  it('orders by major, minor, patch numerically (not as text)', () => {
    expect(compareVersions('1.10.0', '1.9.0')).toBe(1);
    expect(compareVersions('2.0.0', '10.0.0')).toBe(-1);
    expect(compareVersions('1.2.3', 'v1.2.3')).toBe(0);
  });
  it('follows SemVer pre-release precedence', () => {
    const order = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0'];
    for (let i = 0; i + 1 < order.length; i++) {
      expect(compareVersions(order[i], order[i + 1]), `${order[i]} < ${order[i + 1]}`).toBe(-1);
      expect(compareVersions(order[i + 1], order[i])).toBe(1);
    }
  });
  it('ignores build metadata', () => {
    expect(compareVersions('1.0.0+abc', '1.0.0+def')).toBe(0);
  });
  it('returns null for non-SemVer', () => {
    expect(compareVersions('1.0', '1.0.0')).toBeNull();
    expect(compareVersions('14.2.0(tasmota)', '14.3.0')).toBeNull();
    expect(compareVersions(null, '1.0.0')).toBeNull();
    expect(parseSemver('01.0.0')).toBeNull();
  });
  it('sorts SemVer first, then other text, then missing', () => {
    const v = [null, 'weird', '1.10.0', '1.2.0', '1.2.0-rc.1'];
    expect(v.sort(versionSort)).toEqual(['1.2.0-rc.1', '1.2.0', '1.10.0', 'weird', null]);
  });
});
