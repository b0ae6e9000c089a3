// The engine's storage health: is the disk full (changes not being saved)?

import type { EngineStatus, Event } from '../api/types';

/** What a live event says about the disk (`storage.changed`), or null when it says nothing. */
export function diskFullOf(e: Event): boolean | null {
  if (e.kind !== 'storage.changed') return null;
  const data = e.data as { disk_full?: unknown } | null;
  return typeof data?.disk_full === 'boolean' ? data.disk_full : null;
}

/** The disk-full flag of a status answer (false from an engine that does not report it). */
export function diskFullIn(s: EngineStatus | null): boolean {
  return s?.storage?.disk_full === true;
}
