import { useEffect, useMemo, useState } from "react";
import { Link } from "wouter";
import { api, ApiError, type Pattern, type Run } from "../api";
import { Card, Empty, ErrorBox, Loading } from "../components/States";
import { fmtDuration, fmtNumber, fmtTime } from "../format";
import { useApi } from "../hooks";

const DAY_TYPES: Record<string, string> = { all: "every day", weekday: "on weekdays", weekend: "at weekends" };

/** "Kitchen light → on around 06:55, on weekdays" / "Front door → on, then Hall light → on after 45 s". */
export function describe(p: Pattern): string {
  const [a, b] = p.entities;
  if (p.kind === "time_of_day" && a) {
    const w = p.time_window;
    const when = w ? `around ${w.centre} (${w.start}–${w.end})` : "";
    return `${a.entity_id} → ${a.state} ${when}, ${DAY_TYPES[p.day_type] ?? p.day_type}`;
  }
  if (a && b) {
    const d = p.delay ? ` after about ${fmtDuration(p.delay.median_seconds)}` : "";
    return `${a.entity_id} → ${a.state}, then ${b.entity_id} → ${b.state}${d}`;
  }
  return p.id;
}

/**
 * The evidence as dots: one column per day of the analysed window, the height the local time of
 * day (time-of-day patterns) or the delay (sequences).
 */
export function EvidenceChart({ p }: { p: Pattern }) {
  const width = 320;
  const height = 96;
  const points = p.evidence;
  if (points.length === 0) return null;
  const days = points.map((o) => Date.parse(`${o.local_date}T00:00:00Z`) / 86_400_000);
  const first = Math.min(...days);
  const span = Math.max(1, Math.max(...days) - first);
  const tod = p.kind === "time_of_day";
  const minutesOf = (hhmm: string) => {
    const [h, m, s] = hhmm.split(":").map(Number);
    return (h ?? 0) * 60 + (m ?? 0) + (s ?? 0) / 60;
  };
  // times of day near the pattern's centre: 23:58 and 00:04 are 6 minutes apart, not a day
  const centre = p.time_window ? minutesOf(p.time_window.centre) : 720;
  const value = (o: Pattern["evidence"][number]) => {
    if (!tod) return o.delay_seconds ?? 0;
    const v = minutesOf(o.local_time);
    return centre + ((((v - centre + 720) % 1440) + 1440) % 1440) - 720;
  };
  const values = points.map(value);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < (tod ? 30 : 10)) {
    const mid = (hi + lo) / 2;
    lo = mid - (tod ? 15 : 5);
    hi = mid + (tod ? 15 : 5);
  }
  const label = (v: number) => (tod ? `${String(Math.floor(((v % 1440) + 1440) % 1440 / 60)).padStart(2, "0")}:${String(Math.floor(((v % 60) + 60) % 60)).padStart(2, "0")}` : `${Math.round(v)} s`);
  const x = (d: number) => 40 + ((d - first) / span) * (width - 50);
  const y = (v: number) => 8 + (1 - (v - lo) / (hi - lo)) * (height - 24);
  return (
    <svg className="evidence" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`${points.length} occurrences`}>
      <text x="2" y={y(hi) + 4} className="axis">{label(hi)}</text>
      <text x="2" y={y(lo) + 4} className="axis">{label(lo)}</text>
      <line x1="40" x2={width - 10} y1={height - 12} y2={height - 12} className="axis-line" />
      <text x="40" y={height - 1} className="axis">{points[0]?.local_date}</text>
      <text x={width - 10} y={height - 1} textAnchor="end" className="axis">{points[points.length - 1]?.local_date}</text>
      {points.map((o, i) => (
        <circle key={`${o.time}-${i}`} cx={x(days[i] ?? first)} cy={y(values[i] ?? lo)} r="3" className="dot">
          <title>{`${o.local_date} ${o.local_time}${o.delay_seconds !== undefined && o.delay_seconds !== null ? ` (+${o.delay_seconds} s)` : ""}`}</title>
        </circle>
      ))}
    </svg>
  );
}

function PatternCard({ p }: { p: Pattern }) {
  const entity = p.entities[p.entities.length - 1];
  return (
    <li className="pattern" data-pattern={p.id} data-kind={p.kind}>
      <div className="pattern-head">
        <strong>{describe(p)}</strong>
        <span className="badge">{Math.round(p.confidence * 100)}%</span>
      </div>
      <p className="muted small">
        {p.kind === "time_of_day"
          ? `${p.occurrences} of ${p.eligible_days ?? "?"} days`
          : `${p.occurrences} of ${p.trigger_occurrences ?? "?"} times${p.lift ? `, ${fmtNumber(p.lift, 1)}× more often than by chance` : ""}`}
        {" · "}seen {fmtTime(p.first_seen)} – {fmtTime(p.last_seen)}
        {entity && (
          <>
            {" · "}
            <Link href={`/entities/${encodeURIComponent(entity.entity_id)}`}>{entity.entity_id}</Link>
          </>
        )}
      </p>
      <EvidenceChart p={p} />
    </li>
  );
}

export function RunStatus({ runs, onStarted }: { runs: { running: boolean; items: Run[] } | null; onStarted: () => void }) {
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const last = runs?.items.find((r) => r.outcome !== "refused") ?? null;
  const analyse = async () => {
    setBusy(true);
    setMessage(null);
    try {
      await api.startAnalysis();
      setMessage("Analysis started.");
      onStarted();
    } catch (e) {
      setMessage(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title="Analysis">
      {last ? (
        <p className="run-status" data-outcome={last.outcome}>
          Last run: <strong>{last.outcome}</strong> {fmtTime(last.finished_at ?? last.started_at)}
          {last.duration_ms !== null && last.duration_ms !== undefined && ` in ${fmtDuration(last.duration_ms / 1000)}`}
          {` · ${fmtNumber(last.changes_analysed)} changes · ${fmtNumber(last.patterns_found)} patterns`}
          {last.time_zone && ` · ${last.time_zone}`}
          {last.error && <span className="error-text"> — {last.error}</span>}
        </p>
      ) : (
        <p className="muted">No analysis has run yet. One runs every night; start one now to see what HomeIQ learns.</p>
      )}
      <button type="button" className="btn btn-primary" disabled={busy || runs?.running} onClick={() => void analyse()}>
        {runs?.running ? "Analysing…" : "Analyse now"}
      </button>
      {message && <p className="small" role="status">{message}</p>}
    </Card>
  );
}

export default function Patterns() {
  const [kind, setKind] = useState("");
  const [dayType, setDayType] = useState("");
  const [text, setText] = useState("");
  const [tick, setTick] = useState(0);
  const runs = useApi(`runs:${tick}`, (signal) => api.analysisRuns({ limit: 20 }, signal));
  const patterns = useApi(`patterns:${tick}`, (signal) => api.patterns({ limit: 1000 }, signal));
  // while a run is under way, look again every few seconds
  useEffect(() => {
    if (!runs.data?.running) return;
    const t = setTimeout(() => setTick((n) => n + 1), 3000);
    return () => clearTimeout(t);
  }, [runs.data]);
  const shown = useMemo(() => {
    const words = text.trim().toLowerCase().split(/\s+/).filter(Boolean);
    return (patterns.data?.items ?? []).filter(
      (p) =>
        (!kind || p.kind === kind) &&
        (!dayType || p.day_type === dayType) &&
        words.every((w) => p.entities.some((e) => e.entity_id.toLowerCase().includes(w))),
    );
  }, [patterns.data, kind, dayType, text]);
  return (
    <div className="page">
      <h1>Patterns</h1>
      <p className="muted">Routines HomeIQ learned from your home's history: what people do by hand, never what automations do.</p>
      {runs.error ? <ErrorBox error={runs.error} onRetry={runs.reload} /> : <RunStatus runs={runs.data} onStarted={() => setTick((n) => n + 1)} />}
      <div className="filters">
        <label>
          Kind{" "}
          <select value={kind} onChange={(e) => setKind(e.target.value)}>
            <option value="">all</option>
            <option value="time_of_day">time of day</option>
            <option value="co_occurrence">sequence</option>
          </select>
        </label>
        <label>
          Days{" "}
          <select value={dayType} onChange={(e) => setDayType(e.target.value)}>
            <option value="">any</option>
            <option value="all">every day</option>
            <option value="weekday">weekdays</option>
            <option value="weekend">weekends</option>
          </select>
        </label>
        <label>
          Entity <input type="search" value={text} placeholder="light.kitchen" onChange={(e) => setText(e.target.value)} />
        </label>
      </div>
      {patterns.error && <ErrorBox error={patterns.error} onRetry={patterns.reload} />}
      {!patterns.data && !patterns.error && <Loading label="Loading patterns…" />}
      {patterns.data && shown.length === 0 && <Empty>No patterns{patterns.data.total > 0 ? " match these filters" : " learned yet"}.</Empty>}
      {shown.length > 0 && (
        <ul className="patterns" aria-label="Patterns">
          {shown.map((p) => (
            <PatternCard key={p.id} p={p} />
          ))}
        </ul>
      )}
    </div>
  );
}
