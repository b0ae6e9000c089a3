// Coalescing: events arrive one by one (thousands a second during a big rollout); the stores are
// updated at most once per animation frame with everything that arrived since the last one.

export type Schedule = (cb: () => void) => unknown;

const defaultSchedule: Schedule =
  typeof requestAnimationFrame === 'function'
    ? (cb) => requestAnimationFrame(() => cb())
    : (cb) => setTimeout(cb, 16);

export class Batcher<T> {
  private queue: T[] = [];
  private scheduled = false;

  constructor(
    private readonly flush: (items: T[]) => void,
    private readonly schedule: Schedule = defaultSchedule,
  ) {}

  push(item: T): void {
    this.queue.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.run());
    }
  }

  /** Items waiting for the next frame. */
  get pending(): number {
    return this.queue.length;
  }

  private run(): void {
    this.scheduled = false;
    const items = this.queue;
    this.queue = [];
    if (items.length) this.flush(items);
  }
}

/** A rAF-backed schedule that still fires when the window is hidden (rAF pauses; timers do not). */
export const frameOrTimeout: Schedule = (cb) => {
  let fired = false;
  const once = () => {
    if (!fired) {
      fired = true;
      cb();
    }
  };
  if (typeof requestAnimationFrame === 'function') requestAnimationFrame(once);
  setTimeout(once, 100);
};
