// The admin API client: one fetch wrapper (bearer token, JSON, error body → ApiError) and one
// function per endpoint. Nothing else in the UI builds URLs.

import { getToken } from './auth';
import type {
  Channel, Device, DeviceHistory, EngineStatus, Event, EventPage, Firmware, FirmwarePatch, FirmwareSuggestion,
  FleetMetrics, ImportOptions, ImportResponse, InspectReport, LabelChannel, PublicKey, Rollout, RolloutDetail, RolloutPreview,
  RolloutRequest, RuntimeInfo, DemoInfo, SettingsView, SiteSettings, ProbeRequest, ProbeResult, ScanRequest, ScanResult,
  CredentialInfo, CredentialRequest,
} from './types';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Unauthorized = () => void;
let onUnauthorized: Unauthorized = () => {};
/** Called on every 401: the token is wrong or gone; the app shows the token screen. */
export function setUnauthorizedHandler(fn: Unauthorized): void {
  onUnauthorized = fn;
}

export const API = '/api/v1';

export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const t = getToken();
  return t ? { Authorization: `Bearer ${t}`, ...extra } : extra;
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = 'http';
  let message = `${res.status} ${res.statusText}`;
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (body?.error) {
        code = body.error.code ?? code;
        message = body.error.message ?? message;
      }
    } catch {
      if (text) message = text.slice(0, 300);
    }
  } catch {
    /* body unreadable: keep the status line */
  }
  return new ApiError(res.status, code, message);
}

export async function request<T>(method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<T> {
  const headers = authHeaders();
  let payload: BodyInit | undefined;
  if (body instanceof FormData || body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body as BodyInit;
    if (body instanceof Blob || body instanceof ArrayBuffer) headers['Content-Type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path.startsWith('/') ? path : `${API}/${path}`, { method, headers, body: payload, ...init });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the engine: ${(e as Error).message}`);
  }
  if (res.status === 401) {
    onUnauthorized();
    throw await errorOf(res);
  }
  if (!res.ok) throw await errorOf(res);
  const type = res.headers.get('content-type') ?? '';
  if (type.includes('application/json')) return (await res.json()) as T;
  return (await res.text()) as unknown as T;
}

const enc = encodeURIComponent;

export const api = {
  health: () => request<{ status: string; version: string }>('GET', '/health'),
  info: () => request<RuntimeInfo>('GET', 'info'),
  status: () => request<EngineStatus>('GET', 'status'),
  publicKey: () => request<PublicKey>('GET', 'keys/public'),
  startDemo: () => request<DemoInfo>('POST', 'demo'),
  settings: () => request<SettingsView>('GET', 'settings'),
  saveSettings: (s: SiteSettings) => request<SettingsView>('PUT', 'settings', s),

  devices: () => request<Device[]>('GET', 'devices'),
  device: (mac: string) => request<Device>('GET', `devices/${enc(mac)}`),
  deviceHistory: (mac: string) => request<DeviceHistory>('GET', `devices/${enc(mac)}/history`),
  labels: (mac: string, add: string[], remove: string[]) =>
    request<Device>('POST', `devices/${enc(mac)}/labels`, { add, remove }),
  /** The channel a device follows itself; `null`: its labels' channel, else stable. */
  setDeviceChannel: (mac: string, channel: Channel | null) => request<Device>('PUT', `devices/${enc(mac)}/channel`, { channel }),
  /** Lets in a device waiting for approval. */
  approveDevice: (mac: string) => request<Device>('POST', `devices/${enc(mac)}/approve`),
  /** Refuses every request of the device until it is re-keyed. */
  revokeDevice: (mac: string) => request<Device>('POST', `devices/${enc(mac)}/revoke`),
  /** Its secret stops working now; its next check-in enrols it again. */
  rekeyDevice: (mac: string) => request<Device>('POST', `devices/${enc(mac)}/rekey`),
  /** Asks an address over HTTP what it is and adds the device that answers. */
  probe: (body: ProbeRequest) => request<ProbeResult>('POST', 'devices/probe', body),
  /** Queries mDNS again and, with a subnet, probes every address of it. */
  scan: (body: ScanRequest) => request<ScanResult>('POST', 'devices/scan', body),
  /** Vendor device logins: scopes and usernames, never a password. */
  credentials: () => request<CredentialInfo[]>('GET', 'credentials'),
  setCredential: (scope: string, body: CredentialRequest) => request<CredentialInfo>('PUT', `credentials/${enc(scope)}`, body),
  removeCredential: (scope: string) => request<unknown>('DELETE', `credentials/${enc(scope)}`),
  /** Forgets a device (409 while a rollout works on it); it is found anew if it shows up again. */
  forgetDevice: (mac: string) => request<Device>('DELETE', `devices/${enc(mac)}`),
  labelChannels: () => request<LabelChannel[]>('GET', 'channels'),
  setLabelChannel: (label: string, channel: Channel | null) => request<LabelChannel[]>('PUT', `channels/${enc(label)}`, { channel }),

  firmware: () => request<Firmware[]>('GET', 'firmware'),
  /** Per model among the devices `target` selects: the newest firmware on their channel, and a target for exactly the outdated ones. */
  suggestions: (target = 'all') => request<FirmwareSuggestion[]>('GET', `firmware/suggestions?target=${enc(target)}`),
  patchFirmware: (ref: string | number, patch: Partial<FirmwarePatch>) => request<Firmware>('PATCH', `firmware/${enc(String(ref))}`, patch),
  deleteFirmware: (ref: string | number) => request<Firmware>('DELETE', `firmware/${enc(String(ref))}`),
  /** What importing these bytes with `opts` would do (the import's own verdict), importing nothing. */
  inspectBytes: (file: Blob, opts: Partial<ImportOptions> = {}) => {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(opts)) if (v !== undefined && v !== null && v !== '') query.set(k, String(v));
    const qs = query.toString();
    return request<InspectReport>('POST', `firmware/inspect${qs ? `?${qs}` : ''}`, file);
  },
  inspectPath: (path: string, opts: Partial<ImportOptions> = {}) => request<InspectReport>('POST', 'firmware/inspect', { path, ...opts }),
  importPath: (path: string, opts: Partial<ImportOptions> = {}) => request<ImportResponse>('POST', 'firmware/import', { path, ...opts }),
  upload: (file: File, opts: Partial<ImportOptions> = {}) => {
    const form = new FormData();
    form.append('file', file, file.name);
    for (const [k, v] of Object.entries(opts)) if (v !== undefined && v !== null && v !== '') form.append(k, String(v));
    return request<ImportResponse>('POST', 'firmware', form);
  },

  rollouts: () => request<Rollout[]>('GET', 'rollouts'),
  rollout: (id: number) => request<RolloutDetail>('GET', `rollouts/${id}`),
  createRollout: (body: RolloutRequest) => request<RolloutDetail>('POST', 'rollouts', body),
  previewRollout: (body: RolloutRequest) => request<RolloutPreview>('POST', 'rollouts/preview', body),
  rolloutAction: (id: number, action: 'start' | 'pause' | 'resume' | 'cancel' | 'retry-failed') =>
    request<Rollout>('POST', `rollouts/${id}/${action}`),
  /** Stops commanding and waiting for one device of a rollout. */
  skipJob: (id: number, job: number) => request<Rollout>('POST', `rollouts/${id}/jobs/${job}/skip`),
  report: (id: number, format: 'csv' | 'json') =>
    request<string | RolloutDetail>('GET', `rollouts/${id}/report?format=${format}`).then((r) =>
      typeof r === 'string' ? r : JSON.stringify(r, null, 2),
    ),

  fleetMetrics: () => request<FleetMetrics>('GET', 'metrics/fleet'),

  events: (q: { before?: number; kind?: string; limit?: number } = {}) => {
    const p = new URLSearchParams();
    if (q.before) p.set('before', String(q.before));
    if (q.kind) p.set('kind', q.kind);
    if (q.limit) p.set('limit', String(q.limit));
    const s = p.toString();
    return request<EventPage>('GET', `events${s ? '?' + s : ''}`);
  },
};

export type { Event, RolloutPreview };
