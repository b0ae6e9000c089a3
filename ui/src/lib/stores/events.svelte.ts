// The most recent events seen live (for the overview and the events view's live head).

import type { Event } from '../api/types';

const KEEP = 300;

class RecentEvents {
  list = $state.raw<Event[]>([]);

  add(batch: Event[]): void {
    const withId = batch.filter((e) => typeof e.id === 'number' && e.id > 0);
    if (!withId.length) return;
    const next = withId.slice().reverse().concat(this.list);
    this.list = next.length > KEEP ? next.slice(0, KEEP) : next;
  }
}

export const recent = new RecentEvents();
