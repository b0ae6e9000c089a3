import { describe, expect, it } from 'vitest';
import { SseParser, backoff } from './sse';

describe('SseParser', () => {
  it('parses frames with event, id and multi-line data', () => {
    const p = new SseParser();
    const out = p.push('event: job.succeeded\nid: 42\ndata: {"a":1,\ndata: "b":2}\n\n');
    expect(out).toEqual([{ event: 'job.succeeded', id: '42', data: '{"a":1,\n"b":2}', retry: undefined }]);
  });
  it('reassembles frames split across arbitrary chunks, including a split CRLF', () => {
    const text = 'event: a\r\nid: 1\r\ndata: x\r\n\r\n: keep-alive\r\n\r\nevent: rollout.progress\r\ndata: {"rollout":3}\r\n\r\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = new SseParser();
      const out = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(out.map((f) => [f.event, f.id, f.data]), `cut at ${cut}`).toEqual([
        ['a', '1', 'x'],
        ['rollout.progress', undefined, '{"rollout":3}'],
      ]);
    }
  });
  it('ignores comments and frames without data, strips one leading space only', () => {
    const p = new SseParser();
    expect(p.push(': hello\n\nevent: x\n\n')).toEqual([]);
    expect(p.push('data:  two spaces\n\n')[0].data).toBe(' two spaces');
    expect(p.push('data\n\n')[0]).toEqual({ event: 'message', data: '', id: undefined, retry: undefined });
  });
  it('does not emit an unfinished frame', () => {
    const p = new SseParser();
    expect(p.push('data: a\n')).toEqual([]);
    expect(p.push('\n')).toHaveLength(1);
  });
  it('reads retry', () => {
    expect(new SseParser().push('retry: 3000\ndata: x\n\n')[0].retry).toBe(3000);
  });
});

describe('backoff', () => {
  it('grows from 0.5 s and caps at 15 s (±20 %)', () => {
    expect(backoff(0, () => 0.5)).toBe(500);
    expect(backoff(3, () => 0.5)).toBe(4000);
    expect(backoff(30, () => 0.5)).toBe(15000);
    expect(backoff(30, () => 1)).toBe(18000);
    expect(backoff(0, () => 0)).toBe(400);
  });
});
