import { useCallback, useEffect, useId, useState, type FormEvent } from "react";
import type { Webhook, WebhookBody, WebhookRule } from "../api";
import { api, FieldError } from "../api";
import { Card, Empty, ErrorBox, Loading } from "../components/States";
import { fmtNumber, fmtTime } from "../format";
import { useApi } from "../hooks";

const RULE_FIELDS = ["entity_id", "from", "to", "above", "below", "for"] as const;
type RuleField = (typeof RULE_FIELDS)[number];
const RULE_LABELS: Record<RuleField, string> = { entity_id: "Entity id", from: "From", to: "To", above: "Above", below: "Below", for: "For (s)" };
type NumericField = "above" | "below" | "for";
const isNumeric = (f: RuleField): f is NumericField => f === "above" || f === "below" || f === "for";

export interface RuleDraft {
  key: number;
  values: Record<RuleField, string>;
  /** Rule keys the form does not edit (domain, area, …), kept as they are. */
  extra: Omit<WebhookRule, RuleField>;
}

export interface Draft {
  name: string;
  kind: "ha" | "http";
  webhook_id: string;
  url: string;
  secret: string;
  enabled: boolean;
  rules: RuleDraft[];
}

let nextKey = 1;
export function emptyRule(): RuleDraft {
  return { key: nextKey++, values: { entity_id: "", from: "", to: "", above: "", below: "", for: "" }, extra: {} };
}

export function emptyDraft(): Draft {
  return { name: "", kind: "http", webhook_id: "", url: "", secret: "", enabled: true, rules: [emptyRule()] };
}

export function draftOf(w: Webhook): Draft {
  return {
    name: w.name,
    kind: w.kind,
    webhook_id: "",
    url: w.url ?? "",
    secret: "",
    enabled: w.enabled,
    rules: w.rules.map((r) => {
      const { entity_id, from, to, above, below, for: forSecs, ...extra } = r;
      const text = (v: string | number | null | undefined) => (v === undefined || v === null ? "" : String(v));
      const values = { entity_id: text(entity_id), from: text(from), to: text(to), above: text(above), below: text(below), for: text(forSecs) };
      return { key: nextKey++, values, extra };
    }),
  };
}

/** The request body for a draft. Numbers that do not parse are sent as typed, so the API names the field. */
export function bodyOf(d: Draft, editing: boolean): WebhookBody {
  const body: WebhookBody = { name: d.name.trim(), kind: d.kind, enabled: d.enabled, rules: d.rules.map(ruleOf) };
  if (d.kind === "ha") {
    if (d.webhook_id.trim() || !editing) body.webhook_id = d.webhook_id.trim();
  } else {
    body.url = d.url.trim();
  }
  if (d.secret) body.secret = d.secret;
  return body;
}

function ruleOf(r: RuleDraft): WebhookBody["rules"][number] {
  const rule: WebhookBody["rules"][number] = { ...r.extra };
  for (const f of RULE_FIELDS) {
    const v = r.values[f].trim();
    if (v === "") continue;
    if (isNumeric(f)) {
      const n = Number(v);
      rule[f] = Number.isFinite(n) ? n : v;
    } else {
      rule[f] = v;
    }
  }
  return rule;
}

type Errors = { fields: Record<string, string>; general: string | null };
const noErrors: Errors = { fields: {}, general: null };

function FieldMsg({ id, msg }: { id: string; msg?: string }) {
  if (!msg) return null;
  return (
    <span id={id} className="field-error" role="alert">
      {msg}
    </span>
  );
}

function WebhookForm({
  initial,
  editing,
  onSaved,
  onCancel,
}: {
  initial: Draft;
  editing: Webhook | null;
  onSaved: (w: Webhook, secret: string | null) => void;
  onCancel: () => void;
}) {
  const uid = useId();
  const [d, setD] = useState<Draft>(initial);
  const [errors, setErrors] = useState<Errors>(noErrors);
  const [busy, setBusy] = useState(false);
  const set = <K extends keyof Draft>(k: K, v: Draft[K]) => setD((x) => ({ ...x, [k]: v }));
  const setRule = (i: number, f: RuleField, v: string) =>
    setD((x) => ({ ...x, rules: x.rules.map((r, j) => (j === i ? { ...r, values: { ...r.values, [f]: v } } : r)) }));
  const id = (name: string) => `${uid}-${name}`;
  const err = (field: string) => errors.fields[field];
  const described = (field: string) => (err(field) ? { "aria-invalid": true, "aria-describedby": id(`${field}-err`) } : {});
  const targetField = d.kind === "ha" ? "webhook_id" : "url";

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setErrors(noErrors);
    try {
      const body = bodyOf(d, editing !== null);
      if (editing) {
        onSaved(await api.updateWebhook(editing.id, body), null);
      } else {
        const w = await api.createWebhook(body);
        onSaved(w, w.secret);
      }
    } catch (ex) {
      const message = ex instanceof Error ? ex.message : String(ex);
      const field = ex instanceof FieldError ? ex.field : null;
      const known = field !== null && (["name", "kind", "webhook_id", "url", "secret", "enabled"].includes(field) || /^rules\[\d+\]\.(entity_id|from|to|above|below|for)$/.test(field));
      setErrors(known ? { fields: { [field!]: message }, general: null } : { fields: {}, general: message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="webhook-form" onSubmit={submit} aria-label={editing ? `Edit ${editing.name}` : "New webhook"} noValidate>
      {errors.general && <ErrorBox error={errors.general} />}
      <div className="form-grid">
        <div className="field">
          <label htmlFor={id("name")}>Name</label>
          <input id={id("name")} value={d.name} onChange={(e) => set("name", e.target.value)} {...described("name")} />
          <FieldMsg id={id("name-err")} msg={err("name")} />
        </div>
        <div className="field">
          <label htmlFor={id("kind")}>Kind</label>
          <select id={id("kind")} value={d.kind} onChange={(e) => set("kind", e.target.value as Draft["kind"])} {...described("kind")}>
            <option value="http">HTTP URL</option>
            <option value="ha">Home Assistant webhook</option>
          </select>
          <FieldMsg id={id("kind-err")} msg={err("kind")} />
        </div>
        <div className="field field-grow">
          {d.kind === "ha" ? (
            <>
              <label htmlFor={id("webhook_id")}>Webhook id</label>
              <input
                id={id("webhook_id")}
                value={d.webhook_id}
                autoComplete="off"
                placeholder={editing?.webhook_id_hint ? `${editing.webhook_id_hint}… (leave empty to keep)` : ""}
                onChange={(e) => set("webhook_id", e.target.value)}
                {...described("webhook_id")}
              />
            </>
          ) : (
            <>
              <label htmlFor={id("url")}>URL</label>
              <input id={id("url")} type="url" value={d.url} placeholder="https://example.com/hook" onChange={(e) => set("url", e.target.value)} {...described("url")} />
            </>
          )}
          <FieldMsg id={id(`${targetField}-err`)} msg={err(targetField)} />
        </div>
        <div className="field">
          <label htmlFor={id("secret")}>Secret (optional)</label>
          <input
            id={id("secret")}
            type="password"
            autoComplete="new-password"
            value={d.secret}
            placeholder={editing ? "Leave empty to keep" : "Generated if empty"}
            onChange={(e) => set("secret", e.target.value)}
            {...described("secret")}
          />
          <FieldMsg id={id("secret-err")} msg={err("secret")} />
        </div>
        <div className="field field-check">
          <label>
            <input type="checkbox" checked={d.enabled} onChange={(e) => set("enabled", e.target.checked)} /> Enabled
          </label>
        </div>
      </div>
      <fieldset className="rules">
        <legend>Rules</legend>
        {d.rules.length === 0 && <p className="muted small">No rules: add one so that changes send deliveries.</p>}
        {d.rules.map((r, i) => (
          <div className="rule-row" key={r.key} role="group" aria-label={`Rule ${i + 1}`}>
            {RULE_FIELDS.map((f) => {
              const name = `rules[${i}].${f}`;
              const fid = id(`rule-${i}-${f}`);
              const m = err(name);
              return (
                <div className={`field${f === "entity_id" ? " field-grow" : ""}`} key={f}>
                  <label htmlFor={fid}>
                    {RULE_LABELS[f]}
                    <span className="visually-hidden"> (rule {i + 1})</span>
                  </label>
                  <input
                    id={fid}
                    value={r.values[f]}
                    inputMode={isNumeric(f) ? "decimal" : undefined}
                    placeholder={f === "entity_id" ? "sensor.outdoor_temperature" : ""}
                    onChange={(e) => setRule(i, f, e.target.value)}
                    aria-invalid={m ? true : undefined}
                    aria-describedby={m ? `${fid}-err` : undefined}
                  />
                  <FieldMsg id={`${fid}-err`} msg={m} />
                </div>
              );
            })}
            <button type="button" className="btn" aria-label={`Remove rule ${i + 1}`} onClick={() => set("rules", d.rules.filter((_, j) => j !== i))}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" className="btn" onClick={() => set("rules", [...d.rules, emptyRule()])}>
          Add rule
        </button>
      </fieldset>
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : editing ? "Save changes" : "Create webhook"}
        </button>
        <button type="button" className="btn" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

function Deliveries({ target, refresh }: { target: Webhook; refresh: number }) {
  const log = useApi(`deliveries:${target.id}#${refresh}`, (signal) => api.deliveries(target.id, { limit: 50 }, signal));
  const reload = log.reload;
  // poll while the log is shown: deliveries move from pending to delivered or failed
  useEffect(() => {
    const t = setInterval(() => {
      if (!document.hidden) reload();
    }, 3000);
    return () => clearInterval(t);
  }, [target.id]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <Card title={`Deliveries: ${target.name}`}>
      {log.error && <ErrorBox error={log.error} onRetry={log.reload} />}
      {!log.data && log.loading && <Loading label="Loading deliveries…" />}
      {log.data && log.data.items.length === 0 && <Empty>No deliveries yet. Use “Send test” to send one.</Empty>}
      {log.data && log.data.items.length > 0 && (
        <table className="table deliveries" aria-label={`Deliveries of ${target.name}`}>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col" className="num">Attempts</th>
              <th scope="col" className="num">Response</th>
              <th scope="col" className="num">Latency</th>
            </tr>
          </thead>
          <tbody>
            {log.data.items.map((x) => (
              <tr key={x.id} data-delivery={x.id}>
                <td>{fmtTime(x.created_at)}</td>
                <td>
                  {x.event}
                  {x.entity_id ? <span className="muted small"> · {x.entity_id}</span> : null}
                </td>
                <td title={x.last_error ?? undefined}>
                  <span className={`pill status-${x.status}`}>{x.status}</span>
                  {x.last_error ? <div className="muted small wrap">{x.last_error}</div> : null}
                </td>
                <td className="num">{x.attempts}</td>
                <td className="num">{x.response_code ?? "—"}</td>
                <td className="num">{x.latency_ms === null || x.latency_ms === undefined ? "—" : `${fmtNumber(x.latency_ms)} ms`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

type Mode = { kind: "list" } | { kind: "create" } | { kind: "edit"; id: string };

/** A target's Delivered, Failed and Dropped cells; dropped deliveries are flagged when any. */
export function CounterCells({ counters }: { counters: Webhook["counters"] }) {
  const dropped = counters.dropped_count;
  return (
    <>
      <td className="num">{fmtNumber(counters.success_count)}</td>
      <td className="num">{fmtNumber(counters.failure_count)}</td>
      <td className={dropped > 0 ? "num dropped-some" : "num"} data-counter="dropped">
        {fmtNumber(dropped)}
        {dropped > 0 && <span className="visually-hidden"> deliveries dropped: the target's outbox was full</span>}
      </td>
    </>
  );
}

export default function Webhooks() {
  const list = useApi("webhooks", api.webhooks);
  const [mode, setMode] = useState<Mode>({ kind: "list" });
  const [selected, setSelected] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [refresh, setRefresh] = useState(0);
  const items = list.data?.items ?? [];
  const editing = mode.kind === "edit" ? items.find((w) => w.id === mode.id) ?? null : null;
  const target = items.find((w) => w.id === selected) ?? null;

  const saved = useCallback(
    (w: Webhook, secret: string | null) => {
      setMode({ kind: "list" });
      setSelected(w.id);
      setCreated(secret ? { name: w.name, secret } : null);
      setNotice(secret ? null : `Saved “${w.name}”.`);
      list.reload();
    },
    [list],
  );

  const sendTest = async (w: Webhook) => {
    setActionError(null);
    try {
      const r = await api.testWebhook(w.id);
      setSelected(w.id);
      setNotice(`Test delivery queued for “${w.name}” (${r.delivery_id}).`);
      setRefresh((n) => n + 1);
    } catch (e) {
      setActionError(e instanceof Error ? e.message : String(e));
    }
  };

  const remove = async (w: Webhook) => {
    setActionError(null);
    // stop polling its log before it is gone
    if (selected === w.id) setSelected(null);
    try {
      await api.deleteWebhook(w.id);
      setConfirming(null);
      if (mode.kind === "edit" && mode.id === w.id) setMode({ kind: "list" });
      setNotice(`Deleted “${w.name}”.`);
      list.reload();
    } catch (e) {
      setActionError(e instanceof Error ? e.message : String(e));
    }
  };

  return (
    <div className="page page-webhooks">
      <h1>Webhooks</h1>
      <p className="muted">Signed HTTP deliveries sent when Home Assistant state changes match a target's rules.</p>
      {created && (
        <div className="banner warning" role="status" data-testid="created-secret">
          <p>
            Created “{created.name}”. Its signing secret is <code className="mono secret">{created.secret}</code>
          </p>
          <p className="small">Copy it now: it will not be shown again.</p>
          <button type="button" className="btn" onClick={() => setCreated(null)}>
            Dismiss
          </button>
        </div>
      )}
      <div aria-live="polite" className="muted small" data-testid="webhook-notice">
        {notice ?? ""}
      </div>
      {actionError && <ErrorBox error={actionError} />}
      {mode.kind === "list" ? (
        <div>
          <button type="button" className="btn btn-primary" onClick={() => { setMode({ kind: "create" }); setCreated(null); setNotice(null); }}>
            New webhook
          </button>
        </div>
      ) : (
        <Card title={mode.kind === "create" ? "New webhook" : `Edit ${editing?.name ?? ""}`}>
          {mode.kind === "edit" && !editing ? (
            <Loading />
          ) : (
            <WebhookForm
              key={mode.kind === "edit" ? mode.id : "new"}
              initial={editing ? draftOf(editing) : emptyDraft()}
              editing={editing}
              onSaved={saved}
              onCancel={() => setMode({ kind: "list" })}
            />
          )}
        </Card>
      )}
      <Card title="Targets">
        {list.error && <ErrorBox error={list.error} onRetry={list.reload} />}
        {!list.data && list.loading && <Loading label="Loading webhooks…" />}
        {list.data && items.length === 0 && <Empty>No webhooks yet. Create one to send deliveries when states change.</Empty>}
        {items.length > 0 && (
          <div className="table-scroll">
            <table className="table webhooks" aria-label="Webhook targets">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Enabled</th>
                  <th scope="col" className="num">Rules</th>
                  <th scope="col" className="num">Delivered</th>
                  <th scope="col" className="num">Failed</th>
                  <th scope="col" className="num" title="Pending deliveries dropped, oldest first, because the target had webhooks.max_pending_per_target waiting">
                    Dropped
                  </th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {items.map((w) => (
                  <tr key={w.id} data-webhook={w.id} aria-selected={selected === w.id} className={selected === w.id ? "selected" : undefined}>
                    <th scope="row">
                      {w.name}
                      <div className="muted small wrap">{w.kind === "http" ? w.url : `webhook ${w.webhook_id_hint ?? ""}…`}</div>
                    </th>
                    <td>{w.kind === "ha" ? "Home Assistant" : "HTTP"}</td>
                    <td>{w.enabled ? "Yes" : "No"}</td>
                    <td className="num">{w.rules.length}</td>
                    <CounterCells counters={w.counters} />
                    <td className="actions">
                      {confirming === w.id ? (
                        <span role="group" aria-label={`Confirm deleting ${w.name}`}>
                          <span className="small">Delete “{w.name}”? </span>
                          <button type="button" className="btn btn-danger" onClick={() => void remove(w)}>
                            Confirm delete
                          </button>
                          <button type="button" className="btn" autoFocus onClick={() => setConfirming(null)}>
                            Keep
                          </button>
                        </span>
                      ) : (
                        <>
                          <button type="button" className="btn" aria-pressed={selected === w.id} aria-label={`Deliveries of ${w.name}`} onClick={() => setSelected(selected === w.id ? null : w.id)}>
                            Deliveries
                          </button>
                          <button type="button" className="btn" aria-label={`Send test to ${w.name}`} onClick={() => void sendTest(w)}>
                            Send test
                          </button>
                          <button type="button" className="btn" aria-label={`Edit ${w.name}`} onClick={() => { setMode({ kind: "edit", id: w.id }); setCreated(null); setNotice(null); }}>
                            Edit
                          </button>
                          <button type="button" className="btn" aria-label={`Delete ${w.name}`} onClick={() => setConfirming(w.id)}>
                            Delete
                          </button>
                        </>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      {target && <Deliveries target={target} refresh={refresh} />}
    </div>
  );
}
