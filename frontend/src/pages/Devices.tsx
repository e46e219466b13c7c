import { useEffect, useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { Link, useSearch } from "wouter";
import type { Device, DeviceQuery } from "../api";
import { allDevices, api } from "../api";
import { Empty, ErrorBox, Loading } from "../components/States";
import { useApi, useDebounced } from "../hooks";

export interface DeviceFilters {
  q: string;
  area: string;
  manufacturer: string;
  integration: string;
  domain: string;
}

/** The list query for the filters (empty ones left out). */
export function deviceParams(f: DeviceFilters): DeviceQuery {
  return {
    q: f.q.trim() || undefined,
    area: f.area || undefined,
    manufacturer: f.manufacturer || undefined,
    integration: f.integration || undefined,
    domain: f.domain || undefined,
    sort: "name",
  };
}

function Select({ label, value, options, onChange }: { label: string; value: string; options: [string, string][]; onChange: (v: string) => void }) {
  const id = `filter-${label.toLowerCase()}`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">All</option>
        {options.map(([v, l]) => (
          <option key={v} value={v}>{l}</option>
        ))}
      </select>
    </div>
  );
}

export function DeviceList({ devices, areaNames }: { devices: Device[]; areaNames: Map<string, string> }) {
  const parent = useRef<HTMLDivElement>(null);
  const rows = useVirtualizer({ count: devices.length, getScrollElement: () => parent.current, estimateSize: () => 56, overscan: 12 });
  return (
    <div ref={parent} className="vlist" role="list" aria-label="Devices" tabIndex={0}>
      <div style={{ height: rows.getTotalSize(), position: "relative" }}>
        {rows.getVirtualItems().map((v) => {
          const d = devices[v.index];
          return (
            <div key={d.id} role="listitem" className="vrow" style={{ transform: `translateY(${v.start}px)`, height: v.size }}>
              <Link href={`/devices/${encodeURIComponent(d.id)}`} className="vrow-link">
                <span className="vrow-main">
                  <span className="vrow-title">{d.display_name}</span>
                  <span className="vrow-sub">{[d.manufacturer, d.model].filter(Boolean).join(" · ") || "—"}</span>
                </span>
                <span className="vrow-meta">{d.area_id ? areaNames.get(d.area_id) ?? d.area_id : "No area"}</span>
                <span className="vrow-meta">{d.integration ?? "—"}</span>
                <span className="vrow-meta num">{d.entity_count} {d.entity_count === 1 ? "entity" : "entities"}</span>
              </Link>
            </div>
          );
        })}
      </div>
    </div>
  );
}

export default function Devices() {
  const search = useSearch();
  const initial = new URLSearchParams(search);
  const [filters, setFilters] = useState<DeviceFilters>({
    q: initial.get("q") ?? "",
    area: initial.get("area") ?? "",
    manufacturer: initial.get("manufacturer") ?? "",
    integration: initial.get("integration") ?? "",
    domain: initial.get("domain") ?? "",
  });
  const q = useDebounced(filters.q, 250);
  const query = useMemo(() => deviceParams({ ...filters, q }), [filters.area, filters.manufacturer, filters.integration, filters.domain, q]);

  const areas = useApi("areas", api.areas);
  const integrations = useApi("integrations", api.integrations);
  // every device once, for the manufacturer and domain choices
  const [all, setAll] = useState<Device[] | null>(null);
  useEffect(() => {
    const ctl = new AbortController();
    allDevices({ sort: "name" }, ctl.signal).then(setAll).catch(() => setAll([]));
    return () => ctl.abort();
  }, []);

  const [list, setList] = useState<{ items: Device[] | null; error: string | null; loading: boolean }>({ items: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    setList((l) => ({ ...l, loading: true, error: null }));
    allDevices(query, ctl.signal)
      .then((items) => setList({ items, error: null, loading: false }))
      .catch((e) => {
        if (!ctl.signal.aborted) setList({ items: null, error: e instanceof Error ? e.message : String(e), loading: false });
      });
    return () => ctl.abort();
  }, [query, tick]);

  const areaNames = useMemo(() => new Map((areas.data?.items ?? []).map((a) => [a.area_id, a.name])), [areas.data]);
  const manufacturers = useMemo(() => Array.from(new Set((all ?? []).map((d) => d.manufacturer).filter((m): m is string => !!m))).sort(), [all]);
  const domains = useMemo(() => Array.from(new Set((all ?? []).flatMap((d) => d.domains))).sort(), [all]);
  const set = (k: keyof DeviceFilters) => (v: string) => setFilters((f) => ({ ...f, [k]: v }));
  const active = Object.values(filters).some((v) => v !== "");

  return (
    <div className="page page-devices">
      <h1>Devices</h1>
      <div className="filters" role="search">
        <div className="field field-grow">
          <label htmlFor="device-search">Search</label>
          <input id="device-search" type="search" placeholder="Name, manufacturer, model, area…" value={filters.q} onChange={(e) => set("q")(e.target.value)} />
        </div>
        <Select label="Area" value={filters.area} onChange={set("area")} options={(areas.data?.items ?? []).map((a) => [a.area_id, a.name])} />
        <Select label="Manufacturer" value={filters.manufacturer} onChange={set("manufacturer")} options={manufacturers.map((m) => [m, m])} />
        <Select label="Integration" value={filters.integration} onChange={set("integration")} options={(integrations.data?.items ?? []).map((i) => [i.integration, i.integration])} />
        <Select label="Domain" value={filters.domain} onChange={set("domain")} options={domains.map((d) => [d, d])} />
        {active && (
          <button type="button" className="btn" onClick={() => setFilters({ q: "", area: "", manufacturer: "", integration: "", domain: "" })}>
            Clear
          </button>
        )}
      </div>
      <p className="muted" aria-live="polite" data-testid="device-count">
        {list.items ? `${list.items.length} device${list.items.length === 1 ? "" : "s"}` : " "}
        {list.loading && list.items ? " (updating…)" : ""}
      </p>
      {list.error && <ErrorBox error={list.error} onRetry={() => setTick((t) => t + 1)} />}
      {!list.items && list.loading && <Loading label="Loading devices…" />}
      {list.items && list.items.length === 0 && <Empty>{active ? "No device matches these filters." : "No devices yet: HomeIQ lists them once it has synced Home Assistant's registries."}</Empty>}
      {list.items && list.items.length > 0 && <DeviceList devices={list.items} areaNames={areaNames} />}
    </div>
  );
}
