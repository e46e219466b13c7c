// The panel's view of HomeIQ's API: the types come from the server's OpenAPI document
// (src/api.gen.ts, generated from openapi.json by `npm run gen:api`), the calls go through
// openapi-fetch, so a path, a parameter or a body the server does not have fails to compile.
//
// Every request stays under the ingress prefix: URLs resolve against <base href> (which the server
// injects from X-Ingress-Path), never against "/". The panel sends no API token: the server trusts
// requests that come through Home Assistant's ingress gateway.
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./api.gen";

type Schemas = components["schemas"];

type Query<P extends keyof paths> = paths[P] extends { get: { parameters: { query?: infer Q } } } ? NonNullable<Q> : never;
export type DeviceQuery = Query<"/api/v1/devices">;
type HistoryQuery = Query<"/api/v1/history">;
type AggregateQuery = Query<"/api/v1/history/aggregate">;
type DeliveryQuery = Query<"/api/v1/webhooks/{id}/deliveries">;
type PatternQuery = Query<"/api/v1/patterns">;
type RunQuery = Query<"/api/v1/analysis/runs">;
export type SuggestionQuery = Query<"/api/v1/suggestions">;
type WebhookRequest = Schemas["WebhookRequest"];
type Rule = Schemas["Rule"];

/**
 * A webhook as the form sends it: a rule's number field that does not parse is sent as typed, so
 * the API's 400 names the field (`rules[0].above`) and validation has one home, the server.
 */
export type WebhookBody = Omit<WebhookRequest, "rules"> & { rules: { [K in keyof Rule]?: Rule[K] | string }[] };

/** The only place the panel sends what the schema does not promise: see {@link WebhookBody}. */
function asSent(body: WebhookBody): WebhookRequest {
  return body as WebhookRequest;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/** An API error with the field it names (`name`, `rules[0].above`). */
export class FieldError extends ApiError {
  constructor(
    status: number,
    message: string,
    public field: string,
  ) {
    super(status, message);
  }
}

/** `value[key]` when `value` is an object that has it. */
function member(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && key in value ? (value as Record<string, unknown>)[key] : undefined;
}

/** The API's error (`{"error": {"message", "field"?}}`), else the HTTP status line. */
function failure(response: Response, body: unknown): ApiError {
  const message = member(member(body, "error"), "message");
  const field = member(member(body, "error"), "field");
  const text = typeof message === "string" && message ? message : `${response.status} ${response.statusText}`;
  return typeof field === "string" ? new FieldError(response.status, text, field) : new ApiError(response.status, text);
}

let cached: { base: string; client: Client<paths> } | null = null;

/** The client for the page's base URL (the ingress prefix, from <base href>). */
function client(): Client<paths> {
  const base = new URL(".", document.baseURI).href;
  if (cached?.base !== base) {
    // `fetch` looked up on each call (not captured once), as a plain `fetch()` call would
    const client = createClient<paths>({ baseUrl: base, headers: { Accept: "application/json" }, fetch: (r) => globalThis.fetch(r) });
    cached = { base, client };
  }
  return cached.client;
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The JSON body of a successful answer; any other answer throws an {@link ApiError}. */
async function ok<T>(pending: Promise<Result<T>>): Promise<T> {
  const { data, error, response } = await pending;
  if (!response.ok) throw failure(response, error);
  if (data === undefined) throw new ApiError(response.status, `${response.status} ${response.statusText}: empty answer`);
  return data;
}

/** A successful answer without a body (204); any other answer throws an {@link ApiError}. */
async function done(pending: Promise<Result<unknown>>): Promise<void> {
  const { error, response } = await pending;
  if (!response.ok) throw failure(response, error);
}

/** The endpoints the panel calls. */
export const api = {
  health: (signal?: AbortSignal) => ok(client().GET("/health", { signal })),
  realtime: (signal?: AbortSignal) => ok(client().GET("/api/v1/metrics/realtime", { signal })),
  config: (signal?: AbortSignal) => ok(client().GET("/api/v1/config", { signal })),
  areas: (signal?: AbortSignal) => ok(client().GET("/api/v1/areas", { signal })),
  integrations: (signal?: AbortSignal) => ok(client().GET("/api/v1/integrations", { signal })),
  devices: (query: DeviceQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/devices", { params: { query }, signal })),
  device: (id: string, signal?: AbortSignal) => ok(client().GET("/api/v1/devices/{id}", { params: { path: { id } }, signal })),
  entity: (entity_id: string, signal?: AbortSignal) =>
    ok(client().GET("/api/v1/entities/{entity_id}", { params: { path: { entity_id } }, signal })),
  history: (query: HistoryQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/history", { params: { query }, signal })),
  aggregate: (query: AggregateQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/history/aggregate", { params: { query }, signal })),
  webhooks: (signal?: AbortSignal) => ok(client().GET("/api/v1/webhooks", { signal })),
  createWebhook: (body: WebhookBody) => ok(client().POST("/api/v1/webhooks", { body: asSent(body) })),
  updateWebhook: (id: string, body: WebhookBody) => ok(client().PUT("/api/v1/webhooks/{id}", { params: { path: { id } }, body: asSent(body) })),
  deleteWebhook: (id: string) => done(client().DELETE("/api/v1/webhooks/{id}", { params: { path: { id } } })),
  testWebhook: (id: string) => ok(client().POST("/api/v1/webhooks/{id}/test", { params: { path: { id } } })),
  deliveries: (id: string, query: DeliveryQuery, signal?: AbortSignal) =>
    ok(client().GET("/api/v1/webhooks/{id}/deliveries", { params: { path: { id }, query }, signal })),
  patterns: (query: PatternQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/patterns", { params: { query }, signal })),
  analysisRuns: (query: RunQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/analysis/runs", { params: { query }, signal })),
  startAnalysis: () => ok(client().POST("/api/v1/analysis/runs")),
  suggestions: (query: SuggestionQuery, signal?: AbortSignal) => ok(client().GET("/api/v1/suggestions", { params: { query }, signal })),
  deploySuggestion: (id: string) => ok(client().POST("/api/v1/suggestions/{id}/deploy", { params: { path: { id } } })),
  dismissSuggestion: (id: string) => ok(client().POST("/api/v1/suggestions/{id}/dismiss", { params: { path: { id } } })),
  /** `force`: undo even an automation edited in Home Assistant since (else 409). */
  undoSuggestion: (id: string, force: boolean) =>
    ok(client().POST("/api/v1/suggestions/{id}/undo", { params: { path: { id } }, body: { force } })),
  storage: (signal?: AbortSignal) => ok(client().GET("/api/v1/storage", { signal })),
  importStatus: (signal?: AbortSignal) => ok(client().GET("/api/v1/import", { signal })),
  /** Starts (or resumes) importing Home Assistant's recorder: 202, or 409 while one runs. */
  startImport: () => ok(client().POST("/api/v1/import")),
};

// The answers as the panel receives them (openapi-fetch's view of the schemas: the same fields)
type Answer<K extends keyof typeof api> = Awaited<ReturnType<(typeof api)[K]>>;
export type Realtime = Answer<"realtime">;
export type StorageStatus = Realtime["storage"];
export type Area = Answer<"areas">["items"][number];
export type Device = Answer<"devices">["items"][number];
export type Entity = Answer<"entity">;
export type HaState = NonNullable<Entity["state"]>;
export type AggregatePoint = Answer<"aggregate">["series"][number]["points"][number];
export type Webhook = Answer<"updateWebhook">;
export type WebhookRule = Webhook["rules"][number];
export type Pattern = Answer<"patterns">["items"][number];
export type Run = Answer<"analysisRuns">["items"][number];
export type Suggestion = Answer<"suggestions">["items"][number];
export type SuggestionStatus = Suggestion["status"];
export type StorageView = Answer<"storage">;
export type StorageGuard = StorageView["guard"];
export type StorageLevel = StorageGuard["level"];
export type TierView = StorageView["tiers"][number];
export type RetentionStatus = StorageView["retention"];
export type ImportStatus = Answer<"importStatus">;

/** Every device matching `query` (pages of 1000, fetched in parallel after the first). */
export async function allDevices(query: Omit<DeviceQuery, "limit" | "offset">, signal?: AbortSignal): Promise<Device[]> {
  const limit = 1000;
  const first = await api.devices({ ...query, limit, offset: 0 }, signal);
  const rest = [];
  for (let offset = limit; offset < first.total; offset += limit) {
    rest.push(api.devices({ ...query, limit, offset }, signal));
  }
  const pages = await Promise.all(rest);
  return first.items.concat(...pages.map((p) => p.items));
}
