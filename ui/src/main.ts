// Start-up: the app is loaded with a dynamic import so that an exception anywhere while its
// modules load or it mounts (a library that rejects the platform's language, say) is shown on
// the page instead of leaving it blank. Once mounted, views catch their own failures
// (<svelte:boundary> in App.svelte).
import './app.css';
import { mount } from 'svelte';

const target = document.getElementById('app')!;

function showStartupError(e: unknown): void {
  console.error(e);
  const err = e instanceof Error ? e : new Error(String(e));
  const box = document.createElement('div');
  box.className = 'page';
  box.setAttribute('role', 'alert');
  box.dataset.testid = 'startup-error';
  const h = document.createElement('h1');
  h.textContent = 'Flotilla could not start';
  const p = document.createElement('p');
  p.className = 'error';
  p.textContent = err.message || String(e);
  const hint = document.createElement('p');
  hint.textContent = 'If this happens again, copy this message and the details into a report. ';
  const reload = document.createElement('button');
  reload.className = 'primary';
  reload.textContent = 'Reload';
  reload.addEventListener('click', () => location.reload());
  hint.prepend(reload, ' ');
  const details = document.createElement('details');
  details.className = 'raw';
  const summary = document.createElement('summary');
  summary.textContent = 'Technical details';
  const pre = document.createElement('pre');
  pre.textContent = `${err.stack ?? err.message}\n\nnavigator.language: ${safe(() => navigator.language)}\nuser agent: ${safe(() => navigator.userAgent)}`;
  details.append(summary, pre);
  box.append(h, p, hint, details);
  target.replaceChildren(box);
}

function safe(f: () => string): string {
  try {
    return f();
  } catch (e) {
    return `(${(e as Error).message})`;
  }
}

import('./App.svelte')
  .then(({ default: App }) => {
    target.replaceChildren();
    mount(App, { target });
  })
  .catch(showStartupError);
