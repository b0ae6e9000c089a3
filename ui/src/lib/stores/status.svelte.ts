// Engine status (`GET /status`) and the live stream's connection state.

import { api } from '../api/client';
import type { EngineStatus } from '../api/types';
import type { StreamState } from '../api/sse';
import { setUpdatable } from '../logic/families';
import { diskFullIn } from '../logic/storage';

class StatusStore {
  status = $state.raw<EngineStatus | null>(null);
  stream = $state<StreamState>('connecting');
  streamDetail = $state<string | null>(null);
  error = $state<string | null>(null);
  /** The engine cannot save changes: its disk is full (status, then `storage.changed` events). */
  diskFull = $state(false);

  async load(): Promise<void> {
    try {
      this.status = await api.status();
      this.diskFull = diskFullIn(this.status);
      setUpdatable(this.status.updatable_families);
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
  }
}

export const status = new StatusStore();
