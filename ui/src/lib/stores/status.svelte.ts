// Engine status (`GET /status`, falling back to `/info` on engines without it) and the live
// stream's connection state.

import { api, ApiError } from '../api/client';
import type { EngineStatus, RuntimeInfo } from '../api/types';
import type { StreamState } from '../api/sse';

class StatusStore {
  status = $state.raw<EngineStatus | null>(null);
  info = $state.raw<RuntimeInfo | null>(null);
  /** False when this engine has no `/status` yet. */
  hasStatus = $state(true);
  stream = $state<StreamState>('connecting');
  streamDetail = $state<string | null>(null);
  error = $state<string | null>(null);

  async load(): Promise<void> {
    try {
      this.status = await api.status();
      this.hasStatus = true;
      this.error = null;
    } catch (e) {
      if (e instanceof ApiError && (e.missing || e.status === 404)) this.hasStatus = false;
      else this.error = (e as Error).message;
    }
    if (!this.status) {
      try {
        this.info = await api.info();
      } catch (e) {
        this.error = (e as Error).message;
      }
    }
  }
}

export const status = new StatusStore();
