import { useMemo, useState } from "react";
import { Link } from "wouter";
import { api } from "../api";
import { Chart } from "../components/Chart";
import { Card, Empty, ErrorBox, Loading } from "../components/States";
import { Timeline, toSegments } from "../components/Timeline";
import { fmtDuration, fmtOrigin, fmtTime, numeric, recordState } from "../format";
import { useApi } from "../hooks";

export type RangeKey = "1h" | "24h" | "7d" | "30d" | "custom";
const HOURS: Record<Exclude<RangeKey, "custom">, number> = { "1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30 };

export interface Range {
  start: number; // ms
  end: number; // ms
}

export function presetRange(key: Exclude<RangeKey, "custom">, now: number): Range {
  return { start: now - HOURS[key] * 3600e3, end: now };
}

/** `datetime-local` input value for a time (local time, minutes). */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function NumericChart({ entityId, range, unit, onZoom }: { entityId: string; range: Range; unit: string | null; onZoom: (r: Range) => void }) {
  const query = { entity_id: entityId, start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString(), max_points: 400 };
  const agg = useApi(`aggregate:${JSON.stringify(query)}`, (signal) => api.aggregate(query, signal));
  const data = useMemo(() => {
    const ps = agg.data?.series[0]?.points ?? [];
    return [ps.map((p) => Date.parse(p.time) / 1000), ps.map((p) => p.min ?? null), ps.map((p) => p.max ?? null), ps.map((p) => p.mean ?? null)] as [number[], ...(number | null)[][]];
  }, [agg.data]);
  if (agg.error) return <ErrorBox error={agg.error} onRetry={agg.reload} />;
  if (!agg.data) return <Loading label="Loading history…" />;
  if (data[0].length === 0) return <Empty>No recorded values in this range.</Empty>;
  return (
    <>
      <Chart
        ariaLabel={`History of ${entityId}: mean with min/max band`}
        data={data}
        unit={unit ?? undefined}
        height={280}
        band={[2, 1]}
        xRange={[range.start / 1000, range.end / 1000]}
        onZoom={(from, to) => onZoom({ start: from * 1000, end: to * 1000 })}
        series={[
          { label: "min", color: "rgba(3,169,244,.35)", width: 1 },
          { label: "max", color: "rgba(3,169,244,.35)", width: 1, fill: "rgba(3,169,244,.15)" },
          { label: "mean", color: "#03a9f4", width: 2 },
        ]}
      />
      <p className="muted small">Buckets of {fmtDuration(agg.data.interval_secs)}. Drag across the chart to zoom in.</p>
    </>
  );
}

function StateTimeline({ entityId, range }: { entityId: string; range: Range }) {
  const query = { entity_id: entityId, start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString(), limit: 5000 };
  const hist = useApi(`history:${JSON.stringify(query)}`, (signal) => api.history(query, signal));
  const segments = useMemo(() => toSegments(hist.data?.items ?? [], range.start, range.end), [hist.data, range]);
  if (hist.error) return <ErrorBox error={hist.error} onRetry={hist.reload} />;
  if (!hist.data) return <Loading label="Loading history…" />;
  if (segments.length === 0) return <Empty>No recorded states in this range.</Empty>;
  return <Timeline segments={segments} start={range.start} end={range.end} />;
}

function Changes({ entityId, range }: { entityId: string; range: Range }) {
  const query = { entity_id: entityId, start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString(), order: "desc" as const, limit: 200 };
  const hist = useApi(`history:${JSON.stringify(query)}`, (signal) => api.history(query, signal));
  if (hist.error) return <ErrorBox error={hist.error} onRetry={hist.reload} />;
  if (!hist.data) return <Loading />;
  if (hist.data.items.length === 0) return <Empty>No changes in this range.</Empty>;
  return (
    <>
      <table className="table changes">
        <thead>
          <tr><th scope="col">Time</th><th scope="col">State</th><th scope="col">Previous</th><th scope="col">By</th><th scope="col">Lasted</th><th scope="col">Attributes</th></tr>
        </thead>
        <tbody>
          {hist.data.items.map((r, i) => (
            <tr key={`${r.time}-${i}`}>
              <td>{fmtTime(r.time)}</td>
              <td>{recordState(r) ?? <span className="muted">not recorded</span>}</td>
              <td>{r.previous_state ?? "—"}</td>
              <td><span className={`origin origin-${r.origin.kind}`}>{fmtOrigin(r.origin)}</span></td>
              <td>{r.duration_secs === null || r.duration_secs === undefined ? "ongoing" : fmtDuration(r.duration_secs)}</td>
              <td>
                <details>
                  <summary>{Object.keys(r.attributes).length} attributes</summary>
                  <pre className="json">{JSON.stringify(r.attributes, null, 2)}</pre>
                </details>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {hist.data.next_cursor && <p className="muted small">Showing the newest 200 changes; narrow the range to see older ones.</p>}
    </>
  );
}

export default function EntityPage({ entityId }: { entityId: string }) {
  const answer = useApi(`entity:${entityId}`, (signal) => api.entity(entityId, signal));
  const [key, setKey] = useState<RangeKey>("24h");
  const [range, setRange] = useState<Range>(() => presetRange("24h", Date.now()));
  const [custom, setCustom] = useState(() => ({ start: toLocalInput(range.start), end: toLocalInput(range.end) }));

  const pick = (k: RangeKey) => {
    setKey(k);
    if (k !== "custom") setRange(presetRange(k, Date.now()));
  };
  const zoom = (r: Range) => {
    setKey("custom");
    setRange(r);
    setCustom({ start: toLocalInput(r.start), end: toLocalInput(r.end) });
  };

  if (answer.error) return <div className="page"><h1>{entityId}</h1><ErrorBox error={answer.error} onRetry={answer.reload} /></div>;
  if (!answer.data) return <div className="page"><h1>{entityId}</h1><Loading /></div>;
  const e = answer.data;
  const isNumeric = numeric(e.state?.state) !== null || (!!e.unit && e.state?.state !== "unavailable");
  return (
    <div className="page">
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link href="/devices">Devices</Link>
        {e.device_id && (<> › <Link href={`/devices/${encodeURIComponent(e.device_id)}`}>Device</Link></>)} › <span>{e.display_name}</span>
      </nav>
      <h1>{e.display_name}</h1>
      <p className="muted mono">{e.entity_id}</p>
      <Card title="Now">
        <div className="stat-value">{e.state ? `${e.state.state}${e.unit && isNumeric ? ` ${e.unit}` : ""}` : "—"}</div>
        <div className="muted small">since {fmtTime(e.state?.last_changed)}</div>
      </Card>
      <Card title="History">
        <div className="range-bar" role="group" aria-label="Time range">
          {(["1h", "24h", "7d", "30d", "custom"] as RangeKey[]).map((k) => (
            <button key={k} type="button" className={`chip${key === k ? " active" : ""}`} aria-pressed={key === k} onClick={() => pick(k)}>
              {k === "custom" ? "Custom" : k.replace("h", " h").replace("d", " d")}
            </button>
          ))}
        </div>
        {key === "custom" && (
          <form
            className="filters"
            onSubmit={(ev) => {
              ev.preventDefault();
              const start = new Date(custom.start).getTime();
              const end = new Date(custom.end).getTime();
              if (Number.isFinite(start) && Number.isFinite(end) && end > start) setRange({ start, end });
            }}
          >
            <div className="field"><label htmlFor="range-start">From</label><input id="range-start" type="datetime-local" value={custom.start} onChange={(ev) => setCustom((c) => ({ ...c, start: ev.target.value }))} /></div>
            <div className="field"><label htmlFor="range-end">To</label><input id="range-end" type="datetime-local" value={custom.end} onChange={(ev) => setCustom((c) => ({ ...c, end: ev.target.value }))} /></div>
            <button type="submit" className="btn">Show</button>
          </form>
        )}
        {isNumeric ? <NumericChart entityId={e.entity_id} range={range} unit={e.unit ?? null} onZoom={zoom} /> : <StateTimeline entityId={e.entity_id} range={range} />}
      </Card>
      <Card title="Changes">
        <Changes entityId={e.entity_id} range={range} />
      </Card>
    </div>
  );
}
