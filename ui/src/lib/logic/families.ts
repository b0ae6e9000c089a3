// Which device families the engine can update today and which it only finds. The engine has an
// update adapter for Flotilla's own client (`native`) only; the others are discovered (mDNS,
// MQTT, HTTP probes) and listed, but a rollout skips them ("no update adapter for family … yet",
// the engine's planner). Keep this list in step with the engine's adapters.

import type { Family } from '../api/types';
import { FAMILY_LABEL } from './format';

/** Families a rollout can update. */
export const UPDATABLE: ReadonlySet<Family> = new Set<Family>(['native']);

export function canUpdate(f: Family | string): boolean {
  return UPDATABLE.has(f as Family);
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
