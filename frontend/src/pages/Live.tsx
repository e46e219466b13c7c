import { memo, useMemo, useState } from "react";
import { Link } from "wouter";
import { api } from "../api";
import { Empty } from "../components/States";
import { fmtOrigin, fmtTime } from "../format";
import { useApi, useDebounced, useLiveStream } from "../hooks";
import { useStore, type LiveEvent } from "../store";

export interface LiveFilter {
  domain: string;
  area: string;
  text: string;
}

export function matches(e: LiveEvent, f: LiveFilter): boolean {
  if (f.domain && e.domain !== f.domain) return false;
  if (f.area && e.area_id !== f.area) return false;
  const t = f.text.trim().toLowerCase();
  if (t) {
    const name = String(e.new_state?.attributes?.friendly_name ?? "");
    const hay = `${e.entity_id} ${name} ${e.new_state?.state ?? ""} ${e.old_state?.state ?? ""}`.toLowerCase();
    if (!t.split(/\s+/).every((w) => hay.includes(w))) return false;
  }
  return true;
}

const EventRow = memo(function EventRow({ e }: { e: LiveEvent }) {
  const name = String(e.new_state?.attributes?.friendly_name ?? e.entity_id);
  const [open, setOpen] = useState(false);
  return (
    <li className="event" data-entity={e.entity_id}>
      <div className="event-head">
        <time className="muted small" dateTime={e.time_fired}>{fmtTime(e.time_fired)}</time>
        <Link href={`/entities/${encodeURIComponent(e.entity_id)}`} className="event-name">{name}</Link>
        <span className="event-change">
          <span className="muted">{e.old_state?.state ?? "∅"}</span> → <strong>{e.new_state?.state ?? "removed"}</strong>
        </span>
        {e.origin && <span className={`origin origin-${e.origin.kind}`} title="who caused it">{fmtOrigin(e.origin)}</span>}
      </div>
      <details onToggle={(ev) => setOpen((ev.target as HTMLDetailsElement).open)}>
        <summary>JSON</summary>
        {/* rendered only when opened: hundreds of rows stay cheap */}
        {open && (
          <pre className="json">{JSON.stringify({ entity_id: e.entity_id, area_id: e.area_id, time_fired: e.time_fired, origin: e.origin, old_state: e.old_state, new_state: e.new_state }, null, 2)}</pre>
        )}
      </details>
    </li>
  );
});

export default function Live() {
  useLiveStream();
  const events = useStore((s) => s.events);
  const pending = useStore((s) => s.pending.length);
  const paused = useStore((s) => s.paused);
  const status = useStore((s) => s.liveStatus);
  const missed = useStore((s) => s.missed);
  const limit = useStore((s) => s.liveLimit);
  const setPaused = useStore((s) => s.setPaused);
  const clear = useStore((s) => s.clearEvents);
  const areas = useApi("areas", api.areas);
  const [filter, setFilter] = useState<LiveFilter>({ domain: "", area: "", text: "" });
  const text = useDebounced(filter.text, 150);
  const shown = useMemo(() => events.filter((e) => matches(e, { ...filter, text })), [events, filter.domain, filter.area, text]);
  const domains = useMemo(() => Array.from(new Set(events.map((e) => e.domain))).sort(), [events]);

  return (
    <div className="page">
      <h1>Live events</h1>
      <div className="filters">
        <span className={`pill ${status}`} role="status">{status === "open" ? "Live" : status === "connecting" ? "Connecting…" : "Disconnected"}</span>
        <button type="button" className="btn" onClick={() => setPaused(!paused)} aria-pressed={paused}>
          {paused ? `Resume${pending ? ` (${pending} new)` : ""}` : "Pause"}
        </button>
        <button type="button" className="btn" onClick={clear}>Clear</button>
        <div className="field">
          <label htmlFor="live-domain">Domain</label>
          <select id="live-domain" value={filter.domain} onChange={(e) => setFilter((f) => ({ ...f, domain: e.target.value }))}>
            <option value="">All</option>
            {Array.from(new Set([...domains, filter.domain].filter(Boolean))).map((d) => <option key={d} value={d}>{d}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="live-area">Area</label>
          <select id="live-area" value={filter.area} onChange={(e) => setFilter((f) => ({ ...f, area: e.target.value }))}>
            <option value="">All</option>
            {(areas.data?.items ?? []).map((a) => <option key={a.area_id} value={a.area_id}>{a.name}</option>)}
          </select>
        </div>
        <div className="field field-grow">
          <label htmlFor="live-text">Text</label>
          <input id="live-text" type="search" placeholder="Entity, name or state" value={filter.text} onChange={(e) => setFilter((f) => ({ ...f, text: e.target.value }))} />
        </div>
      </div>
      <p className="muted small">Newest first; the last {limit} events are kept.{missed > 0 ? ` ${missed} events were missed because this page fell behind.` : ""}</p>
      {shown.length === 0 ? (
        <Empty>{events.length === 0 ? "Waiting for state changes… they appear here as Home Assistant reports them." : "No event matches these filters."}</Empty>
      ) : (
        <ul className="events" aria-label="Events">
          {shown.map((e) => <EventRow key={e.seq} e={e} />)}
        </ul>
      )}
    </div>
  );
}
