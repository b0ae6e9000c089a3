// The current hash route; remembers the last view so the app reopens where it was.
// In-app links (`href="#/…"`) are followed here, synchronously: the new view renders before the
// next frame instead of a task later (after the browser's `hashchange`). A view's own state that
// belongs in its URL (filters) is written with `replaceSoon`: coalesced, because browsers refuse
// a page that rewrites its URL too often (WebKit: 100 times in 30 s), and typing in a filter would.

import { parseRoute, type Route } from '../logic/route';
import { prefs } from './prefs.svelte';

class Router {
  route = $state<Route>(parseRoute(typeof location === 'undefined' ? '' : location.hash));

  private sync = (): void => {
    this.route = parseRoute(location.hash);
    prefs.lastRoute = location.hash || '#/';
  };

  /** The browser moved (back, forward, a typed URL): a pending rewrite was for the page left. */
  private moved = (): void => {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending = null;
    this.sync();
  };

  start(): () => void {
    if (!location.hash || location.hash === '#' || location.hash === '#/') {
      if (prefs.lastRoute && prefs.lastRoute !== '#/' && !prefs.lastRoute.includes('token=')) history.replaceState(null, '', prefs.lastRoute);
    }
    this.sync();
    const onClick = (e: MouseEvent) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      const a = (e.target as Element | null)?.closest?.('a[href^="#/"]') as HTMLAnchorElement | null;
      if (!a || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
      e.preventDefault();
      this.go(a.getAttribute('href') ?? '#/');
    };
    window.addEventListener('hashchange', this.moved);
    window.addEventListener('popstate', this.moved);
    document.addEventListener('click', onClick);
    return () => {
      window.removeEventListener('hashchange', this.moved);
      window.removeEventListener('popstate', this.moved);
      document.removeEventListener('click', onClick);
    };
  }

  go(hash: string): void {
    this.flush();
    const h = hash.startsWith('#') ? hash : `#${hash}`;
    if (location.hash === h) return;
    history.pushState(null, '', h);
    this.sync();
  }

  private pending: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  /** Rewrites the current history entry's URL soon (no new entry): a view's filters as they change. */
  replaceSoon(hash: string, delay = 400): void {
    this.pending = hash.startsWith('#') ? hash : `#${hash}`;
    this.timer ??= setTimeout(() => this.flush(), delay);
  }

  /** Writes a pending `replaceSoon` now (before navigating, so going back returns to it). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const h = this.pending;
    this.pending = null;
    if (h === null || location.hash === h) return;
    try {
      history.replaceState(null, '', h);
    } catch {
      return; // refused (too many rewrites): the view still shows the state; only the URL lags
    }
    this.sync();
  }
}

export const router = new Router();
