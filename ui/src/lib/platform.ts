// What differs between the browser and the Tauri desktop window, behind one interface: file
// drops (File objects vs. real paths), the open/save dialogs, and writing an exported file.
// Tauri modules are imported lazily so the browser bundle never loads them.

export const isTauri = typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;

/** A firmware file picked or dropped: bytes in a browser, a path on the desktop. */
export type PickedFile = { kind: 'file'; file: File; name: string } | { kind: 'path'; path: string; name: string };

export function baseName(path: string): string {
  return path.split(/[\\/]/).pop() ?? path;
}

export function isFirmwareName(name: string): boolean {
  return /\.bin(\.gz)?$/i.test(name) || /\.gz$/i.test(name);
}

export type DragPhase = 'over' | 'drop' | 'leave';

/**
 * Listens to native drag-and-drop over the whole window (desktop only; in a browser the view
 * handles HTML5 drag events itself). Returns an unlisten function.
 */
export async function onNativeDrop(cb: (phase: DragPhase, files: PickedFile[]) => void): Promise<() => void> {
  if (!isTauri) return () => {};
  const { getCurrentWebview } = await import('@tauri-apps/api/webview');
  return getCurrentWebview().onDragDropEvent((event) => {
    const p = event.payload;
    if (p.type === 'enter' || p.type === 'over') cb('over', []);
    else if (p.type === 'drop') cb('drop', p.paths.map((path) => ({ kind: 'path', path, name: baseName(path) })));
    else cb('leave', []);
  });
}

/** Native file dialog (desktop); in a browser, returns null and the caller clicks its file input. */
export async function pickFirmwareFiles(): Promise<PickedFile[] | null> {
  if (!isTauri) return null;
  const { open } = await import('@tauri-apps/plugin-dialog');
  const picked = await open({ multiple: true, directory: false, filters: [{ name: 'Firmware', extensions: ['bin', 'gz'] }] });
  if (!picked) return [];
  const paths = Array.isArray(picked) ? picked : [picked];
  return paths.map((path) => ({ kind: 'path', path, name: baseName(path) }));
}

/** Saves text: native save dialog + a shell command on the desktop, a download in a browser. Returns where it went, or null if cancelled. */
export async function saveTextFile(suggestedName: string, contents: string, mime: string): Promise<string | null> {
  if (isTauri) {
    const { save } = await import('@tauri-apps/plugin-dialog');
    const ext = suggestedName.split('.').pop() ?? 'txt';
    const path = await save({ defaultPath: suggestedName, filters: [{ name: ext.toUpperCase(), extensions: [ext] }] });
    if (!path) return null;
    const { invoke } = await import('@tauri-apps/api/core');
    await invoke('write_text_file', { path, contents });
    return path;
  }
  const url = URL.createObjectURL(new Blob([contents], { type: mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = suggestedName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return suggestedName;
}

/** Desktop only: restarts the app (the engine inside it starts again with the saved settings). */
export async function restartApp(): Promise<void> {
  if (!isTauri) throw new Error('only the desktop app can restart itself; restart `flotilla serve` instead');
  const { invoke } = await import('@tauri-apps/api/core');
  await invoke('restart_app');
}
