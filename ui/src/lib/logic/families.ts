// Which device families the engine can update today and which it only finds: the engine says so
// (`updatable_families` in `GET /api/v1/status`, read by the status store); until it has answered,
// Flotilla's own client (`native`), the one family every engine updates. The others are listed,
// and a rollout skips them ("no update adapter for family … yet", the engine's planner).

import type { Family } from '../api/types';
import { FAMILY_LABEL } from './format';

/** Families a rollout can update, as the engine last said. */
let updatable: ReadonlySet<Family> = new Set<Family>(['native']);

/** The engine's answer (`EngineStatus.updatable_families`). */
export function setUpdatable(families: readonly Family[]): void {
  updatable = new Set(families);
}

export function canUpdate(f: Family | string): boolean {
  return updatable.has(f as Family);
}

/** A family's name, with what Flotilla can do for it when it cannot update it: "Tasmota — updates not supported yet". */
export function familyText(f: Family | string): string {
  const name = FAMILY_LABEL[f] ?? f;
  if (canUpdate(f)) return name;
  return f === 'unknown' ? `${name} — cannot be updated` : `${name} — updates not supported yet`;
}

/** What the device view says about a family: whether Flotilla updates it, and what that means. */
export function familyNote(f: Family | string): string {
  if (canUpdate(f)) return 'Flotilla updates this family.';
  if (f === 'unknown') return 'The family of this device is not known: Flotilla cannot update it.';
  return `Flotilla finds ${FAMILY_LABEL[f] ?? f} devices but cannot update them yet: a rollout skips them.`;
}
