// The current hash route; remembers the last view so the app reopens where it was.

import { parseRoute, type Route } from '../logic/route';
import { prefs } from './prefs.svelte';

class Router {
  route = $state<Route>(parseRoute(typeof location === 'undefined' ? '' : location.hash));

  start(): () => void {
    if (!location.hash || location.hash === '#' || location.hash === '#/') {
      if (prefs.lastRoute && prefs.lastRoute !== '#/' && !prefs.lastRoute.includes('token=')) history.replaceState(null, '', prefs.lastRoute);
    }
    const on = () => {
      this.route = parseRoute(location.hash);
      prefs.lastRoute = location.hash || '#/';
    };
    on();
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }

  go(hash: string): void {
    if (location.hash === hash) return;
    location.hash = hash;
  }
}

export const router = new Router();
