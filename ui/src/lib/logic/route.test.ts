import { describe, expect, it } from 'vitest';
import { EMPTY_FILTER } from './devices';
import { devicesHref, href, parseRoute, section, type Route } from './route';

describe('routes round-trip through the URL hash', () => {
  const routes: Route[] = [
    { view: 'overview' },
    { view: 'devices', filter: { ...EMPTY_FILTER } },
    { view: 'devices', filter: { ...EMPTY_FILTER, online: 'online' } },
    { view: 'devices', filter: { ...EMPTY_FILTER, version: 'outdated' } },
    { view: 'devices', filter: { text: 'pull 1&2 #a=b', family: 'shelly-gen2', version: '=1.0.0-rc.1+b7', online: 'offline', label: 'line-3' } },
    { view: 'device', mac: '02:dd:60:00:00:0f' },
    { view: 'firmware' },
    { view: 'rollouts', states: [] },
    { view: 'rollouts', states: ['running', 'paused'] },
    { view: 'review' },
    { view: 'review', firmware: '3' },
    { view: 'review', devices: ['02:dd:60:00:00:0f', '02:dd:60:00:00:10'] },
    { view: 'review', firmware: '3', devices: ['@selection:model1'] },
    { view: 'wizard' },
    { view: 'wizard', firmware: '3', devices: ['aa:bb:cc:dd:ee:ff'], onlyOutdated: false, onlyOnline: false },
    { view: 'wizard', firmware: '2.0.0', onlyOutdated: true },
    { view: 'rollout', id: 12 },
    { view: 'events' },
    { view: 'settings' },
  ];
  for (const r of routes) {
    it(`${href(r)}`, () => {
      const back = parseRoute(href(r));
      expect(JSON.parse(JSON.stringify(back))).toEqual(JSON.parse(JSON.stringify(r)));
    });
  }

  it('writes filters readably and leaves out what is empty', () => {
    expect(devicesHref()).toBe('#/devices');
    expect(devicesHref({ online: 'online' })).toBe('#/devices?online=online');
    expect(devicesHref({ version: '=1.0.0' })).toBe('#/devices?version==1.0.0');
    expect(href({ view: 'rollouts', states: ['running', 'paused'] })).toBe('#/rollouts?state=running,paused');
    expect(href({ view: 'review', devices: ['02:dd:60:00:00:0f'] })).toBe('#/rollouts/review?devices=02:dd:60:00:00:0f');
  });

  it('ignores what it does not understand instead of failing', () => {
    expect(parseRoute('#/devices?online=maybe&version=sideways&q=x')).toEqual({ view: 'devices', filter: { ...EMPTY_FILTER, text: 'x' } });
    expect(parseRoute('#/rollouts?state=running,exploded')).toEqual({ view: 'rollouts', states: ['running'] });
    expect(parseRoute('#/nowhere')).toEqual({ view: 'overview' });
    expect(parseRoute('#/devices/%E0%A4%A')).toEqual({ view: 'overview' });
    expect(parseRoute('')).toEqual({ view: 'overview' });
  });

  it('puts the review and the wizard under Rollouts in the nav', () => {
    expect(section({ view: 'review' })).toBe('rollouts');
    expect(section({ view: 'wizard' })).toBe('rollouts');
    expect(section({ view: 'device', mac: 'x' })).toBe('devices');
  });
});
