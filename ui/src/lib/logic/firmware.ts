// The firmware library's edit dialog: what changed, as a `PATCH /firmware/{id}` body. A field
// left as it was is not sent (`null` in the engine's patch means "unchanged"); emptied notes are
// sent as `""` (cleared), an emptied stepping stone as `""` (removed).

import type { Channel, Firmware, FirmwarePatch } from '../api/types';
import { compareVersions } from './semver';

export interface FirmwareEdit {
  notes: string;
  channel: Channel;
  minVersion: string;
}

/** The patch for an edit, or why it cannot be saved. */
export function editPatch(fw: Pick<Firmware, 'notes' | 'channel' | 'min_version' | 'version'>, e: FirmwareEdit): Partial<FirmwarePatch> | string {
  const p: Partial<FirmwarePatch> = {};
  const notes = e.notes.trim();
  if (notes !== (fw.notes ?? '')) p.notes = notes;
  if (e.channel !== fw.channel) p.channel = e.channel;
  const min = e.minVersion.trim();
  if (min !== (fw.min_version ?? '')) {
    if (min) {
      const c = compareVersions(min, fw.version);
      if (c === null) return `"${min}" is not a version like 1.2.0`;
      if (c > 0) return `the stepping stone ${min} is above this firmware's own version ${fw.version}`;
    }
    p.min_version = min;
  }
  return p;
}
