// Whether we hold a token the engine accepts; a 401 anywhere flips `authed` off.

import { bootstrapToken, getToken, setToken } from '../api/auth';
import { api, setUnauthorizedHandler } from '../api/client';

class Session {
  token = $state<string | null>(null);
  /** null while the first check runs. */
  authed = $state<boolean | null>(null);
  error = $state<string | null>(null);

  init(): void {
    this.token = bootstrapToken();
    setUnauthorizedHandler(() => {
      this.authed = false;
      this.error = 'The engine refused the token (it may have been regenerated).';
    });
    if (!this.token) this.authed = false;
  }

  /** Validates a pasted token with a cheap authenticated call. */
  async login(token: string): Promise<boolean> {
    setToken(token);
    this.token = getToken();
    this.error = null;
    try {
      await api.info();
      this.authed = true;
      return true;
    } catch (e) {
      this.authed = false;
      this.error = (e as Error).message;
      return false;
    }
  }

  async check(): Promise<void> {
    if (!this.token) {
      this.authed = false;
      return;
    }
    try {
      await api.info();
      this.authed = true;
    } catch (e) {
      if (this.authed !== false) this.error = (e as Error).message;
      // network errors keep us "authed" so the app can show its offline banner
      if ((e as { status?: number }).status !== 401) this.authed = true;
    }
  }

  logout(): void {
    setToken(null);
    this.token = null;
    this.authed = false;
  }
}

export const session = new Session();
