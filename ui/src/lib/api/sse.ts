// Server-Sent Events over fetch(): EventSource cannot send the bearer header, so the stream is
// read as bytes and split into frames here. The parser is pure and incremental (fed arbitrary
// chunks); the connection loop reconnects with backoff and `Last-Event-ID`.

export interface SseFrame {
  /** `event:` field; "message" when absent. */
  event: string;
  data: string;
  /** `id:` field; undefined when the frame had none (live-only events). */
  id?: string;
  retry?: number;
}

/** Incremental SSE parser following the WHATWG event-stream rules. */
export class SseParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private retry: number | undefined;
  private sawData = false;

  /** Feeds a decoded text chunk; returns the frames it completed. */
  push(chunk: string): SseFrame[] {
    this.buf += chunk;
    const out: SseFrame[] = [];
    let start = 0;
    for (;;) {
      // A line ends at \n, \r\n or a lone \r.
      let i = start;
      let end = -1;
      let next = -1;
      for (; i < this.buf.length; i++) {
        const c = this.buf.charCodeAt(i);
        if (c === 10) {
          end = i;
          next = i + 1;
          break;
        }
        if (c === 13) {
          if (i + 1 >= this.buf.length) break; // wait: \r may be followed by \n in the next chunk
          end = i;
          next = this.buf.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
          break;
        }
      }
      if (end < 0) break;
      this.line(this.buf.slice(start, end), out);
      start = next;
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  private line(line: string, out: SseFrame[]): void {
    if (line === '') {
      if (this.sawData) {
        out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id, retry: this.retry });
      }
      this.data = [];
      this.event = '';
      this.id = undefined;
      this.retry = undefined;
      this.sawData = false;
      return;
    }
    if (line.startsWith(':')) return; // comment / keep-alive
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        this.sawData = true;
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
  }
}

/** Delay before reconnect attempt `n` (0-based): 0.5 s doubling to 15 s, with ±20 % jitter. */
export function backoff(n: number, rand: () => number = Math.random): number {
  const base = Math.min(15000, 500 * 2 ** Math.min(n, 10));
  return Math.round(base * (0.8 + 0.4 * rand()));
}

export type StreamState = 'connecting' | 'open' | 'retrying' | 'closed';

export interface StreamOptions {
  url: string;
  headers: () => Record<string, string>;
  onFrame: (f: SseFrame) => void;
  onState?: (s: StreamState, detail?: string) => void;
  /** Stop for good (e.g. 401). Return true to stop reconnecting. */
  onHttpError?: (status: number) => boolean;
  lastEventId?: string;
}

/** Opens the stream and keeps it open until `close()` is called. */
export function openStream(opts: StreamOptions): { close: () => void; lastEventId: () => string | undefined } {
  let lastId = opts.lastEventId;
  let closed = false;
  let ctrl: AbortController | null = null;
  let attempt = 0;

  const run = async () => {
    while (!closed) {
      opts.onState?.(attempt === 0 ? 'connecting' : 'retrying');
      ctrl = new AbortController();
      try {
        const headers: Record<string, string> = { Accept: 'text/event-stream', ...opts.headers() };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(opts.url, { headers, signal: ctrl.signal, cache: 'no-store' });
        if (!res.ok || !res.body) {
          if (opts.onHttpError?.(res.status)) {
            closed = true;
            break;
          }
          throw new Error(`HTTP ${res.status}`);
        }
        attempt = 0;
        opts.onState?.('open');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new SseParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const f of parser.push(value)) {
            if (f.id !== undefined) lastId = f.id;
            opts.onFrame(f);
          }
        }
      } catch (e) {
        if (closed) break;
        opts.onState?.('retrying', (e as Error).message);
      }
      if (closed) break;
      await new Promise((r) => setTimeout(r, backoff(attempt++)));
    }
    opts.onState?.('closed');
  };
  void run();
  return {
    close: () => {
      closed = true;
      ctrl?.abort();
    },
    lastEventId: () => lastId,
  };
}
