// Preferences that survive a restart (localStorage): theme, last view, devices sort and filters.

import { EMPTY_FILTER, type DeviceFilter, type Sort } from '../logic/devices';

export type Theme = 'system' | 'light' | 'dark';

function load<T>(key: string, fallback: T): T {
  try {
    const raw = localStorage.getItem(key);
    if (raw === null) return fallback;
    const v = JSON.parse(raw) as T;
    return typeof fallback === 'object' && fallback !== null && !Array.isArray(fallback) ? { ...fallback, ...v } : v;
  } catch {
    return fallback;
  }
}

function save(key: string, v: unknown): void {
  try {
    localStorage.setItem(key, JSON.stringify(v));
  } catch {
    /* storage full or disabled: preferences are a nicety */
  }
}

class Prefs {
  #theme = $state<Theme>(load('flotilla.theme', 'system'));
  #lastRoute = $state<string>(load('flotilla.lastRoute', '#/'));
  #sort = $state<Sort>(load('flotilla.devices.sort', { key: 'name', dir: 1 } as Sort));
  #filter = $state<DeviceFilter>(load('flotilla.devices.filter', EMPTY_FILTER));

  get theme() {
    return this.#theme;
  }
  set theme(v: Theme) {
    this.#theme = v;
    save('flotilla.theme', v);
  }
  get lastRoute() {
    return this.#lastRoute;
  }
  set lastRoute(v: string) {
    this.#lastRoute = v;
    save('flotilla.lastRoute', v);
  }
  get sort() {
    return this.#sort;
  }
  set sort(v: Sort) {
    this.#sort = v;
    save('flotilla.devices.sort', v);
  }
  get filter() {
    return this.#filter;
  }
  set filter(v: DeviceFilter) {
    this.#filter = v;
    save('flotilla.devices.filter', v);
  }
}

export const prefs = new Prefs();
