import { useMemo } from "react";
import { Link } from "wouter";
import type { AggregatePoint } from "../api";
import { api } from "../api";
import { Chart } from "../components/Chart";
import { Card, Empty, ErrorBox, Loading } from "../components/States";
import { fmtTime, numeric } from "../format";
import { useApi } from "../hooks";

function Spark({ points }: { points: AggregatePoint[] | undefined }) {
  const data = useMemo(() => {
    // buckets without a mean (no numeric value in them) are left out
    const ps = (points ?? []).flatMap((p) => (p.mean === null || p.mean === undefined ? [] : [{ time: p.time, mean: p.mean }]));
    return [ps.map((p) => Date.parse(p.time) / 1000), ps.map((p) => p.mean)] as [number[], number[]];
  }, [points]);
  if (data[0].length < 2) return <span className="muted small">no 24 h history</span>;
  return <Chart compact height={40} ariaLabel="Last 24 hours" data={data} series={[{ label: "mean", color: "#03a9f4", width: 1.5 }]} />;
}

export default function DevicePage({ id }: { id: string }) {
  const answer = useApi(`device:${id}`, (signal) => api.device(id, signal));
  const areas = useApi("areas", api.areas);
  const numericIds = useMemo(
    () => (answer.data?.entities ?? []).filter((e) => numeric(e.state?.state) !== null).map((e) => e.entity_id).slice(0, 20),
    [answer.data],
  );
  const range = useMemo(() => {
    const end = new Date();
    return { start: new Date(end.getTime() - 24 * 3600e3).toISOString(), end: end.toISOString() };
  }, []);
  const query = { entity_id: numericIds.join(","), ...range, max_points: 48 };
  const history = useApi(numericIds.length ? `aggregate:${JSON.stringify(query)}` : null, (signal) => api.aggregate(query, signal));
  const series = useMemo(() => new Map((history.data?.series ?? []).map((s) => [s.entity_id, s.points])), [history.data]);

  if (answer.error) return <div className="page"><h1>Device</h1><ErrorBox error={answer.error} onRetry={answer.reload} /></div>;
  if (!answer.data) return <div className="page"><h1>Device</h1><Loading /></div>;
  const device = answer.data;
  const entities = device.entities;
  const area = device.area_id ? areas.data?.items.find((a) => a.area_id === device.area_id)?.name ?? device.area_id : null;
  return (
    <div className="page">
      <nav aria-label="Breadcrumb" className="crumbs"><Link href="/devices">Devices</Link> › <span>{device.display_name}</span></nav>
      <h1>{device.display_name}</h1>
      <Card title="Device">
        <dl className="facts">
          <dt>Manufacturer</dt><dd>{device.manufacturer ?? "—"}</dd>
          <dt>Model</dt><dd>{device.model ?? "—"}</dd>
          <dt>Area</dt><dd>{area ?? "No area"}</dd>
          <dt>Integration</dt><dd>{device.integration ?? "—"}</dd>
          {device.sw_version && (<><dt>Firmware</dt><dd>{device.sw_version}</dd></>)}
          <dt>Id</dt><dd className="mono">{device.id}</dd>
        </dl>
      </Card>
      <Card title={`Entities (${entities.length})`}>
        {entities.length === 0 ? (
          <Empty>This device has no entities.</Empty>
        ) : (
          <table className="table">
            <thead>
              <tr><th scope="col">Entity</th><th scope="col">State</th><th scope="col">Last changed</th><th scope="col" className="spark-col">24 h</th></tr>
            </thead>
            <tbody>
              {entities.map((e) => (
                <tr key={e.entity_id}>
                  <td>
                    <Link href={`/entities/${encodeURIComponent(e.entity_id)}`}>{e.display_name}</Link>
                    <div className="muted small mono">{e.entity_id}</div>
                  </td>
                  <td>{e.state ? `${e.state.state}${e.unit && numeric(e.state.state) !== null ? ` ${e.unit}` : ""}` : "—"}</td>
                  <td>{fmtTime(e.state?.last_changed)}</td>
                  <td className="spark-col">
                    {numericIds.includes(e.entity_id) ? (history.loading ? <span className="muted small">…</span> : <Spark points={series.get(e.entity_id)} />) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {history.error && <ErrorBox error={`History: ${history.error}`} onRetry={history.reload} />}
      </Card>
    </div>
  );
}
