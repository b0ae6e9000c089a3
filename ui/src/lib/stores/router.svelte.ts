// The current hash route; remembers the last view so the app reopens where it was.
// In-app links (`href="#/…"`) are followed here, synchronously: the new view renders before the
// next frame instead of a task later (after the browser's `hashchange`).

import { parseRoute, type Route } from '../logic/route';
import { prefs } from './prefs.svelte';

class Router {
  route = $state<Route>(parseRoute(typeof location === 'undefined' ? '' : location.hash));

  private sync = (): void => {
    this.route = parseRoute(location.hash);
    prefs.lastRoute = location.hash || '#/';
  };

  start(): () => void {
    if (!location.hash || location.hash === '#' || location.hash === '#/') {
      if (prefs.lastRoute && prefs.lastRoute !== '#/' && !prefs.lastRoute.includes('token=')) history.replaceState(null, '', prefs.lastRoute);
    }
    this.sync();
    const onClick = (e: MouseEvent) => {
      if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      const a = (e.target as Element | null)?.closest?.('a[href^="#"]') as HTMLAnchorElement | null;
      if (!a || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
      e.preventDefault();
      this.go(a.getAttribute('href') ?? '#/');
    };
    window.addEventListener('hashchange', this.sync);
    window.addEventListener('popstate', this.sync);
    document.addEventListener('click', onClick);
    return () => {
      window.removeEventListener('hashchange', this.sync);
      window.removeEventListener('popstate', this.sync);
      document.removeEventListener('click', onClick);
    };
  }

  go(hash: string): void {
    const h = hash.startsWith('#') ? hash : `#${hash}`;
    if (location.hash === h) return;
    history.pushState(null, '', h);
    this.sync();
  }
}

export const router = new Router();
