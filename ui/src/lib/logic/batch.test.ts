import { describe, expect, it } from 'vitest';
import { Batcher } from './batch';
import { parseRoute, href } from './route';
import { tokenFromHash } from '../api/auth';

describe('Batcher', () => {
  it('delivers everything pushed before a frame in one flush, in order', () => {
    const frames: (() => void)[] = [];
    const flushed: number[][] = [];
    const b = new Batcher<number>((xs) => flushed.push(xs), (cb) => frames.push(cb));
    for (let i = 0; i < 2000; i++) b.push(i);
    expect(frames).toHaveLength(1); // one frame scheduled, not 2000
    expect(b.pending).toBe(2000);
    frames.shift()!();
    expect(flushed).toHaveLength(1);
    expect(flushed[0]).toHaveLength(2000);
    expect(flushed[0][1999]).toBe(1999);
    b.push(5);
    expect(frames).toHaveLength(1);
    frames.shift()!();
    expect(flushed[1]).toEqual([5]);
  });
  it('schedules a new frame for items pushed during a flush', () => {
    const frames: (() => void)[] = [];
    const flushed: number[][] = [];
    const b: Batcher<number> = new Batcher<number>((xs) => {
      flushed.push(xs);
      if (xs[0] === 1) b.push(2);
    }, (cb) => frames.push(cb));
    b.push(1);
    frames.shift()!();
    expect(frames).toHaveLength(1);
    frames.shift()!();
    expect(flushed).toEqual([[1], [2]]);
  });
});

describe('routes and token bootstrap', () => {
  it('parses every route and round-trips hrefs', () => {
    expect(parseRoute('')).toEqual({ view: 'overview' });
    expect(parseRoute('#/devices/aa%3Abb')).toEqual({ view: 'device', mac: 'aa:bb' });
    expect(parseRoute('#/rollouts/12')).toEqual({ view: 'rollout', id: 12 });
    expect(parseRoute('#/rollouts/new?firmware=3&devices=a,b')).toEqual({ view: 'wizard', firmware: '3', devices: ['a', 'b'] });
    expect(parseRoute(href({ view: 'device', mac: 'aa:bb:cc' }))).toEqual({ view: 'device', mac: 'aa:bb:cc' });
    expect(parseRoute('#/nonsense')).toEqual({ view: 'overview' });
  });
  it('takes the token out of the fragment and keeps the rest', () => {
    expect(tokenFromHash('#token=abc')).toEqual({ token: 'abc', rest: '' });
    expect(tokenFromHash('#/devices&token=x%2By')).toEqual({ token: 'x+y', rest: '#/devices' });
    expect(tokenFromHash('#/firmware')).toEqual({ token: null, rest: '#/firmware' });
  });
});
