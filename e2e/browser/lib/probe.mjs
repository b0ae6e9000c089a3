// Measurement code injected into the page before the UI's own scripts (CDP init script, so the
// engine's strict CSP does not apply to it). Everything is timed with the page's own clock
// (performance.now(), 0 = navigation start).
//
// - frames: requestAnimationFrame timestamps while recording → frame times.
// - interactions: for each trusted click / keydown / input-change, the time from the event's
//   timeStamp to the first paint after the expected result is in the DOM (a selector given
//   beforehand with __probe.expect(sel); none = the next paint). "Paint" = a task queued from the
//   first requestAnimationFrame callback that sees the result, i.e. after that frame rendered.
// - eventTiming: Event Timing API entries (≥ 16 ms only, by the API's design) as a cross-check.
// - firstRowDom / firstRowAt: when the first devices-table row entered the DOM / was painted.

export function probeScript() {
  const P = {
    frames: null,
    longFrames: [],
    interactions: [],
    eventTiming: [],
    firstRowDom: null,
    firstRowAt: null,
    _expect: null,
    expect(sel) {
      this._expect = sel;
    },
    startFrames() {
      const ts = [];
      this.frames = ts;
      const loop = (t) => {
        if (this.frames !== ts) return;
        ts.push(t);
        requestAnimationFrame(loop);
      };
      requestAnimationFrame(loop);
    },
    stopFrames() {
      const ts = this.frames ?? [];
      this.frames = null;
      const d = [];
      for (let i = 1; i < ts.length; i++) d.push(ts[i] - ts[i - 1]);
      return d;
    },
    takeInteractions() {
      const x = this.interactions;
      this.interactions = [];
      return x;
    },
    takeEventTiming() {
      const x = this.eventTiming;
      this.eventTiming = [];
      return x;
    },
  };
  window.__probe = P;

  const measure = (e) => {
    if (e.type !== 'change' && !e.isTrusted) return;
    const t0 = e.timeStamp;
    const sel = P._expect;
    P._expect = null;
    const target = e.target instanceof Element ? e.target.closest('[data-testid]')?.getAttribute('data-testid') ?? e.target.tagName : '?';
    const started = performance.now();
    const check = () => {
      if (sel && !document.querySelector(sel)) {
        if (performance.now() - started > 10_000) P.interactions.push({ type: e.type, target, sel, at: t0, ms: null, timeout: true });
        else requestAnimationFrame(check);
        return;
      }
      setTimeout(() => P.interactions.push({ type: e.type, target, sel, at: t0, ms: performance.now() - t0 }), 0);
    };
    requestAnimationFrame(check);
  };
  for (const type of ['click', 'keydown', 'change']) addEventListener(type, measure, { capture: true });

  try {
    new PerformanceObserver((list) => {
      for (const en of list.getEntries()) {
        if (en.interactionId) P.eventTiming.push({ name: en.name, duration: en.duration, interactionId: en.interactionId, processing: en.processingEnd - en.processingStart, delay: en.processingStart - en.startTime });
      }
    }).observe({ type: 'event', durationThreshold: 16, buffered: true });
  } catch {
    /* no Event Timing */
  }
  try {
    new PerformanceObserver((list) => {
      for (const en of list.getEntries()) P.longFrames.push({ at: en.startTime, duration: en.duration, blocking: en.blockingDuration ?? null });
    }).observe({ type: 'long-animation-frame', buffered: true });
  } catch {
    /* no LoAF */
  }

  const mo = new MutationObserver(() => {
    if (document.querySelector('[data-testid="device-row"]')) {
      P.firstRowDom = performance.now();
      mo.disconnect();
      requestAnimationFrame(() => setTimeout(() => (P.firstRowAt = performance.now()), 0));
    }
  });
  const arm = () => mo.observe(document.documentElement, { childList: true, subtree: true });
  if (document.documentElement) arm();
  else addEventListener('DOMContentLoaded', arm, { once: true });
}

/** Frame-time summary: p50/p95/max and counts of frames over 50 ms and over 100 ms. */
export function frameSummary(deltas, stats) {
  const s = stats(deltas);
  return { ...s, over50: deltas.filter((d) => d > 50).length, over100: deltas.filter((d) => d > 100).length };
}
