// The admin token: read once from the `#token=…` fragment the engine opens us with, kept in
// sessionStorage (never localStorage: it dies with the window), and removed from the visible URL.

const KEY = 'flotilla.token';

/** Extracts `token=` from a location hash like `#token=abc` or `#/devices&token=abc`. */
export function tokenFromHash(hash: string): { token: string | null; rest: string } {
  const h = hash.startsWith('#') ? hash.slice(1) : hash;
  const parts = h.split('&');
  let token: string | null = null;
  const kept: string[] = [];
  for (const p of parts) {
    if (p.startsWith('token=')) token = decodeURIComponent(p.slice(6)) || null;
    else if (p) kept.push(p);
  }
  return { token, rest: kept.length ? '#' + kept.join('&') : '' };
}

/** Call once at start-up: moves a fragment token into sessionStorage and cleans the URL. */
export function bootstrapToken(): string | null {
  if (typeof window === 'undefined') return null;
  const { token, rest } = tokenFromHash(window.location.hash);
  if (token) {
    sessionStorage.setItem(KEY, token);
    const url = window.location.pathname + window.location.search + (rest || '#/');
    history.replaceState(null, '', url);
  }
  return getToken();
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(KEY, token.trim());
  else sessionStorage.removeItem(KEY);
}
