import { useMemo } from "react";
import { Link } from "wouter";
import type { Realtime, StorageStatus } from "../api";
import { api } from "../api";
import { Chart } from "../components/Chart";
import { Card, Empty, ErrorBox, Loading, Stat } from "../components/States";
import { fmtBytes, fmtDuration, fmtNumber } from "../format";
import { useApi, useRealtimePolling } from "../hooks";
import { useStore } from "../store";

export interface Warning {
  level: "error" | "warning";
  title: string;
  detail: string;
  action: string;
}

/** What needs attention, each with what to do about it. */
export function warningsFor(r: Realtime): Warning[] {
  const out: Warning[] = [];
  const ha = r.home_assistant;
  if (ha.state === "auth_failed") {
    out.push({
      level: "error",
      title: "Home Assistant refused HomeIQ's token",
      detail: ha.last_error ?? "authentication failed",
      action: "Outside the add-on, create a new long-lived access token and set ha.token; as an add-on, restart it.",
    });
  } else if (!ha.connected) {
    out.push({
      level: "warning",
      title: "Not connected to Home Assistant",
      detail: `${ha.state}${ha.last_error ? `: ${ha.last_error}` : ""}`,
      action: "HomeIQ reconnects on its own and backfills the gap; check that Home Assistant is running and ha.url is right.",
    });
  }
  const s = r.storage;
  if (s.influxdb) {
    const influx = s.influxdb;
    if (!s.reachable || influx.spool_points > 0) {
      out.push({
        level: "warning",
        title: s.reachable ? "Writing spooled history back to InfluxDB" : "InfluxDB is unreachable: spooling to disk",
        detail: `${fmtNumber(influx.spool_points)} points (${fmtBytes(influx.spool_bytes)}) on disk, ${fmtNumber(s.queued)} in memory.`,
        action: "Nothing is lost while the spool has room (spool.max_bytes); check InfluxDB (influxdb.url, disk space).",
      });
    }
    if (influx.quarantined > 0) {
      out.push({
        level: "warning",
        title: `${fmtNumber(influx.quarantined)} points quarantined`,
        detail: "InfluxDB refused them as invalid (usually a field that changed type).",
        action: "See api/v1/quarantine for the lines and reasons; exclude the entity or ignore the attribute (influxdb.ignore_attributes).",
      });
    }
  } else if (!s.reachable) {
    out.push({
      level: "warning",
      title: "The embedded history store cannot write",
      detail: `${fmtNumber(s.queued + s.in_flight)} points held in memory${s.last_error ? ` (last error: ${s.last_error})` : ""}.`,
      action: "HomeIQ retries on its own; check the free space of the data folder, where history.db lives.",
    });
  }
  const known = new Set(out.map((w) => w.detail));
  for (const reason of r.reasons) {
    if (![...known].some((d) => reason.includes(d))) {
      out.push({ level: r.status === "failed" ? "error" : "warning", title: "Health check", detail: reason, action: "See the details in /health/deep." });
    }
  }
  for (const w of r.warnings) {
    out.push({ level: "warning", title: "Since start", detail: w, action: "Shown until HomeIQ restarts." });
  }
  return out;
}

/** The storage as users know it. */
export function storageName(s: StorageStatus): string {
  return s.backend === "influxdb" ? "InfluxDB" : "Embedded storage";
}

/** What the storage is doing, in one word or two. */
function storageState(s: StorageStatus): string {
  if (s.influxdb) return s.reachable ? (s.influxdb.spool_points > 0 ? "Replaying spool" : "Writing") : "Unreachable";
  return s.reachable ? "Writing" : "Cannot write";
}

/** The card of the storage actually configured: InfluxDB (with its spool) or the embedded store. */
export function StorageCard({ storage: s }: { storage: StorageStatus }) {
  return (
    <Card title={storageName(s)} className="storage-card">
      <div className="stats">
        <Stat label="state" value={storageState(s)} hint={s.influxdb ? undefined : "SQLite in the data folder"} />
        <Stat label="write latency p50 / p95" value={`${fmtNumber(s.p50_latency_ms, 1)} / ${fmtNumber(s.p95_latency_ms, 1)} ms`} hint={`last ${fmtNumber(s.last_latency_ms, 1)} ms`} />
        {s.influxdb && <Stat label="spool" value={`${fmtNumber(s.influxdb.spool_points)} points`} hint={fmtBytes(s.influxdb.spool_bytes)} />}
        <Stat label="queued in memory" value={fmtNumber(s.queued)} />
        <Stat label="points written" value={fmtNumber(s.written)} />
      </div>
    </Card>
  );
}

function EventsChart({ r }: { r: Realtime }) {
  const data = useMemo(() => {
    const xs = r.events.last_hour.map((m) => Date.parse(m.minute) / 1000);
    const ys = r.events.last_hour.map((m) => m.events / 60);
    return [xs, ys] as [number[], number[]];
  }, [r.events.last_hour]);
  if (data[0].length < 2) return <Empty>Not enough data yet: the chart fills in minute by minute.</Empty>;
  return (
    <Chart
      ariaLabel="Events per second over the last hour"
      data={data}
      height={200}
      unit="/s"
      series={[{ label: "events/s", color: "#03a9f4", fill: "rgba(3,169,244,.18)" }]}
    />
  );
}

export default function Overview() {
  useRealtimePolling(5000);
  const r = useStore((s) => s.realtime);
  const error = useStore((s) => s.realtimeError);
  const reload = useStore((s) => s.loadRealtime);
  const integrations = useApi("integrations", api.integrations);
  const top = useMemo(
    () => [...(integrations.data?.items ?? [])].sort((a, b) => b.entities - a.entities).slice(0, 8),
    [integrations.data],
  );

  if (!r && error) return <div className="page"><h1>Overview</h1><ErrorBox error={error} onRetry={() => void reload()} /></div>;
  if (!r) return <div className="page"><h1>Overview</h1><Loading /></div>;
  const warnings = warningsFor(r);
  const ha = r.home_assistant;

  return (
    <div className="page">
      <h1>Overview</h1>
      {error && <ErrorBox error={`Refresh failed: ${error} (showing the last answer)`} />}
      <section aria-label="Warnings" className="warnings">
        {warnings.length === 0 ? (
          <div className="banner ok" role="status">
            All good: connected to Home Assistant and writing to {r.storage.backend === "influxdb" ? "InfluxDB" : "the embedded history store"}.
          </div>
        ) : (
          warnings.map((w, i) => (
            <div key={i} className={`banner ${w.level}`} role="alert">
              <strong>{w.title}</strong>
              <div>{w.detail}</div>
              <div className="banner-action">What to do: {w.action}</div>
            </div>
          ))
        )}
      </section>
      <div className="grid">
        <Card title="Home Assistant">
          <div className="stats">
            <Stat label="connection" value={ha.connected ? "Connected" : ha.state.replace(/_/g, " ")} hint={ha.version ? `Home Assistant ${ha.version}` : undefined} />
            <Stat label="last event" value={ha.last_event_age_secs === null ? "—" : `${fmtDuration(ha.last_event_age_secs)} ago`} />
            <Stat label="connects" value={fmtNumber(ha.connects)} />
          </div>
        </Card>
        <StorageCard storage={r.storage} />
        <Card title="Your home">
          <div className="stats">
            <Stat label="devices" value={fmtNumber(r.counts.devices)} />
            <Stat label="entities" value={fmtNumber(r.counts.entities)} />
            <Stat label="areas" value={fmtNumber(r.counts.areas)} />
            <Stat label="integrations" value={fmtNumber(r.counts.integrations)} />
          </div>
        </Card>
      </div>
      <Card title={`Events per second, last hour (now ${fmtNumber(r.events.per_second_avg_1m, 2)}/s, ${fmtNumber(r.counts.events_total)} since start)`}>
        <EventsChart r={r} />
      </Card>
      <Card title="Top integrations">
        {integrations.loading && <Loading />}
        {integrations.error && <ErrorBox error={integrations.error} onRetry={integrations.reload} />}
        {integrations.data && top.length === 0 && <Empty>No integrations yet.</Empty>}
        {top.length > 0 && (
          <table className="table">
            <thead>
              <tr><th scope="col">Integration</th><th scope="col" className="num">Devices</th><th scope="col" className="num">Entities</th></tr>
            </thead>
            <tbody>
              {top.map((i) => (
                <tr key={i.integration}>
                  <td><Link href={`/devices?integration=${encodeURIComponent(i.integration)}`}>{i.integration}</Link></td>
                  <td className="num">{fmtNumber(i.devices)}</td>
                  <td className="num">{fmtNumber(i.entities)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
      <p className="muted">HomeIQ {r.version}, up {fmtDuration(r.uptime_secs)}{r.rss_bytes ? `, ${fmtBytes(r.rss_bytes)} memory` : ""}. Refreshed every 5 s while this tab is visible.</p>
    </div>
  );
}
