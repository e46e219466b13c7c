// Every URL here is relative: it resolves against <base href> (the ingress prefix), never "/".

export interface HaState {
  entity_id: string;
  state: string;
  attributes: Record<string, unknown>;
  last_changed: string;
  last_updated: string;
}

export interface Device {
  id: string;
  name: string | null;
  name_by_user: string | null;
  display_name: string;
  manufacturer: string | null;
  model: string | null;
  area_id: string | null;
  integration: string | null;
  sw_version: string | null;
  hw_version: string | null;
  domains: string[];
  entity_count: number;
}

export interface Entity {
  entity_id: string;
  domain: string;
  display_name: string;
  device_id: string | null;
  effective_area_id: string | null;
  platform: string | null;
  device_class: string | null;
  unit: string | null;
  state: HaState | null;
}

export interface Page<T> {
  total: number;
  limit: number;
  offset: number;
  items: T[];
}

export interface Area {
  area_id: string;
  name: string;
  device_count: number;
  entity_count: number;
}

export interface IntegrationCount {
  integration: string;
  devices: number;
  entities: number;
}

/** InfluxDB's own counters: credentials, quarantine, spool. */
export interface InfluxWriterStatus {
  auth_error: string | null;
  dropped_rejected: number;
  quarantined: number;
  spooling: boolean;
  spool_bytes: number;
  spool_points: number;
  spool_oldest_age_secs: number | null;
  replayed: number;
  spool_dropped: number;
}

/** Where history goes and how writing goes (`storage` in realtime and deep health). */
export interface StorageStatus {
  backend: "influxdb" | "embedded";
  reachable: boolean;
  queued: number;
  in_flight: number;
  written: number;
  dropped_invalid: number;
  dropped_overflow: number;
  retries: number;
  write_errors: number;
  last_write_at: string | null;
  last_error: string | null;
  last_latency_ms: number | null;
  mean_latency_ms: number | null;
  p50_latency_ms: number | null;
  p95_latency_ms: number | null;
  /** Only with the InfluxDB backend. */
  influxdb?: InfluxWriterStatus;
}

export interface Realtime {
  version: string;
  uptime_secs: number;
  rss_bytes: number | null;
  status: "ok" | "degraded" | "failed";
  reasons: string[];
  warnings: string[];
  home_assistant: {
    state: string;
    connected: boolean;
    version: string | null;
    last_event_age_secs: number | null;
    connects: number;
    last_error: string | null;
  };
  storage: StorageStatus;
  events: {
    per_second_now: number;
    per_second_avg_1m: number;
    last_minute: number[];
    last_hour: { minute: string; events: number }[];
  };
  queues: {
    ha_queue: number;
  };
  counts: {
    devices: number;
    entities: number;
    entities_with_state: number;
    areas: number;
    floors: number;
    labels: number;
    integrations: number;
    events_total: number;
    live_listeners: number;
  };
}

export interface HistoryRecord {
  entity_id: string;
  time: string;
  state: string;
  value: number | null;
  attributes: Record<string, unknown>;
  previous_state: string | null;
  duration_secs: number | null;
}

export interface AggregatePoint {
  time: string;
  mean: number | null;
  min: number | null;
  max: number | null;
  count: number;
  last: number | null;
}

export interface AggregateAnswer {
  start: string;
  end: string;
  interval_secs: number;
  series: { entity_id: string; points: AggregatePoint[] }[];
}

export interface ConfigAnswer {
  settings: Record<string, unknown>;
  sources: Record<string, string>;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Builds a relative API URL (no leading slash) with the defined parameters. */
export function apiUrl(path: string, params: Record<string, string | number | undefined | null> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const qs = q.toString();
  return `api/v1/${path.replace(/^\/+/, "")}${qs ? `?${qs}` : ""}`;
}

export async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const resp = await fetch(url, { signal, headers: { Accept: "application/json" } });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      if (body?.error?.message) message = body.error.message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, message);
  }
  return (await resp.json()) as T;
}

/** Every page of a paged list (pages of 1000, fetched in parallel after the first). */
export async function getAll<T>(
  path: string,
  params: Record<string, string | undefined>,
  signal?: AbortSignal,
): Promise<T[]> {
  const limit = 1000;
  const first = await getJson<Page<T>>(apiUrl(path, { ...params, limit, offset: 0 }), signal);
  const rest = [];
  for (let offset = limit; offset < first.total; offset += limit) {
    rest.push(getJson<Page<T>>(apiUrl(path, { ...params, limit, offset }), signal));
  }
  const pages = await Promise.all(rest);
  return first.items.concat(...pages.map((p) => p.items));
}

// ---- webhooks ----

export interface WebhookRule {
  entity_id?: string;
  from?: string;
  to?: string;
  above?: number;
  below?: number;
  for?: number;
  [key: string]: unknown;
}

export interface Webhook {
  id: string;
  name: string;
  kind: "ha" | "http";
  webhook_id_hint?: string;
  url?: string;
  secret_set: boolean;
  enabled: boolean;
  rules: WebhookRule[];
  limits: Record<string, unknown>;
  counters: {
    success_count: number;
    failure_count: number;
    /** Pending deliveries dropped, oldest first, because the target had webhooks.max_pending_per_target waiting. */
    dropped_count: number;
    last_success_at: string | null;
    last_failure_at: string | null;
  };
  created_at: string;
  updated_at: string;
}

export interface Delivery {
  id: string;
  event: string;
  rule_index: number | null;
  entity_id: string | null;
  status: string;
  attempts: number;
  created_at: string | null;
  finished_at: string | null;
  latency_ms: number | null;
  response_code: number | null;
  last_error: string | null;
}

/** An API error with the field it names (`name`, `rules[0].above`), if any. */
export class FieldError extends ApiError {
  constructor(
    status: number,
    message: string,
    public field: string | null,
  ) {
    super(status, message);
  }
}

/** Sends a JSON body (or none) with `method` to the relative `url`; errors carry the API's field. */
export async function sendJson<T>(method: string, url: string, body?: unknown): Promise<T> {
  const resp = await fetch(url, {
    method,
    headers: body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    let field: string | null = null;
    try {
      const b = await resp.json();
      if (b?.error?.message) message = b.error.message;
      if (typeof b?.error?.field === "string") field = b.error.field;
    } catch {
      /* not JSON */
    }
    throw new FieldError(resp.status, message, field);
  }
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  return (text ? JSON.parse(text) : undefined) as T;
}
