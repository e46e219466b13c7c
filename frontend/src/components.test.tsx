import { act, fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { Device, Realtime, StorageStatus } from "./api";
import { NO_STATE, Timeline, toSegments } from "./components/Timeline";
import { recordState } from "./format";
import { deviceParams, DeviceList } from "./pages/Devices";
import { presetRange, toLocalInput } from "./pages/Entity";
import { matches } from "./pages/Live";
import { StorageCard, warningsFor } from "./pages/Overview";
import { flatten } from "./pages/Settings";
import { CounterCells } from "./pages/Webhooks";
import { describe as describePattern, EvidenceChart } from "./pages/Patterns";
import type { Pattern } from "./api";
import { useDebounced } from "./hooks";
import { useState } from "react";

describe("state timeline", () => {
  it("merges runs and clips to the range", () => {
    const t = (m: number) => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
    const start = Date.parse(t(10));
    const end = Date.parse(t(60));
    const segs = toSegments(
      [
        { time: t(0), state: "off" },
        { time: t(20), state: "on" },
        { time: t(30), state: "on" },
        { time: t(40), state: "off" },
      ],
      start,
      end,
    );
    expect(segs.map((s) => [s.state, (s.from - start) / 60000, (s.to - start) / 60000])).toEqual([
      ["off", 0, 10],
      ["on", 10, 30],
      ["off", 30, 50],
    ]);
    render(<Timeline segments={segs} start={start} end={end} />);
    expect(screen.getAllByRole("listitem", { name: /from/ })).toHaveLength(3);
  });
});

describe("history records without a state string", () => {
  it("read as their number, else as not recorded", () => {
    expect(recordState({ state: "on", value: 1 })).toBe("on");
    expect(recordState({ state: null, value: 21.5 })).toBe("21.5");
    expect(recordState({ value: 0 })).toBe("0");
    expect(recordState({})).toBeNull();
    const t = (m: number) => new Date(Date.UTC(2026, 0, 1, 0, m)).toISOString();
    const segs = toSegments([{ time: t(0), state: "on" }, { time: t(10), state: null, value: 3 }, { time: t(20) }], Date.parse(t(0)), Date.parse(t(30)));
    expect(segs.map((s) => s.state)).toEqual(["on", "3", NO_STATE]);
    render(<Timeline segments={segs} start={Date.parse(t(0))} end={Date.parse(t(30))} />);
    expect(screen.getByRole("listitem", { name: /^not recorded from/ })).toBeTruthy();
  });
});

describe("device list", () => {
  it("sizes its scroller for 5,000 rows without rendering them all", () => {
    const devices: Device[] = Array.from({ length: 5000 }, (_, i) => ({
      id: `d${i}`, name: `Device ${i}`, name_by_user: null, display_name: `Device ${i}`, manufacturer: "Acme", model: "X",
      area_id: null, integration: "demo", sw_version: null, hw_version: null, domains: ["light"], entity_count: 1,
      identifiers: [["demo", `d${i}`]], labels: [], model_id: null, config_entries: null, primary_config_entry: null,
      config_entry_id: null, config_subentry_id: null, disabled_by: null, entry_type: null, via_device_id: null,
      parent_device_id: null, serial_number: null, configuration_url: null, created_at: null, modified_at: null,
    }));
    // jsdom has no layout: give the scroller a size
    Object.defineProperty(HTMLElement.prototype, "offsetHeight", { configurable: true, value: 600 });
    Object.defineProperty(HTMLElement.prototype, "offsetWidth", { configurable: true, value: 800 });
    HTMLElement.prototype.getBoundingClientRect = () => ({ x: 0, y: 0, top: 0, left: 0, right: 800, bottom: 600, width: 800, height: 600, toJSON() {} });
    const { container } = render(<DeviceList devices={devices} areaNames={new Map()} />);
    // the spacer is as tall as all rows, only a window of them is in the DOM
    expect((container.querySelector(".vlist > div") as HTMLElement).style.height).toBe(`${5000 * 56}px`);
    // (jsdom has no layout, so the visible window itself is checked in the browser e2e)
    expect(screen.queryAllByRole("listitem").length).toBeLessThan(100);
  });

  it("leaves empty filters out of the query", () => {
    expect(deviceParams({ q: "  lamp ", area: "", manufacturer: "Acme", integration: "", domain: "light" })).toEqual({
      q: "lamp", area: undefined, manufacturer: "Acme", integration: undefined, domain: "light", sort: "name",
    });
  });
});

describe("debounce", () => {
  it("settles after the delay", async () => {
    function Probe() {
      const [v, setV] = useState("");
      const d = useDebounced(v, 50);
      return <input aria-label="probe" value={v} onChange={(e) => setV(e.target.value)} data-debounced={d} />;
    }
    render(<Probe />);
    const input = screen.getByLabelText("probe");
    fireEvent.change(input, { target: { value: "a" } });
    fireEvent.change(input, { target: { value: "ab" } });
    expect(input.getAttribute("data-debounced")).toBe("");
    await act(() => new Promise((r) => setTimeout(r, 80)));
    expect(input.getAttribute("data-debounced")).toBe("ab");
  });
});

describe("overview warnings", () => {
  const embedded: StorageStatus = {
    backend: "embedded", reachable: true, queued: 0, in_flight: 0, written: 10, dropped_invalid: 0, dropped_overflow: 0,
    retries: 0, write_errors: 0, disk_full: 0, last_write_at: null, last_error: null, last_latency_ms: 1, mean_latency_ms: 1,
    p50_latency_ms: 1, p95_latency_ms: 1,
  };
  const influxdb: StorageStatus = {
    ...embedded,
    backend: "influxdb",
    influxdb: {
      auth_error: null, dropped_rejected: 0, quarantined: 0, spooling: false, spool_bytes: 0, spool_points: 0,
      spool_oldest_age_secs: null, replayed: 0, spool_dropped: 0, spool_corrupt_records: 0, spool_corrupt_bytes: 0,
    },
  };
  const base: Realtime = {
    version: "0.1.0", uptime_secs: 1, rss_bytes: null, status: "ok", reasons: [], warnings: [],
    home_assistant: { state: "connected", connected: true, version: "2025.4", last_event_age_secs: 1, connects: 1, last_error: null },
    storage: influxdb,
    events: { per_second_now: 0, per_second_avg_1m: 0, last_minute: [], last_hour: [] },
    queues: { ha_queue: 0 },
    counts: { devices: 1, entities: 1, entities_with_state: 1, areas: 0, floors: 0, labels: 0, integrations: 1, events_total: 0, live_listeners: 0 },
  };
  it("is quiet when all is well", () => {
    expect(warningsFor(base)).toEqual([]);
    expect(warningsFor({ ...base, storage: embedded })).toEqual([]);
  });
  it("says what to do about auth, spooling and quarantine", () => {
    const w = warningsFor({
      ...base,
      home_assistant: { ...base.home_assistant, state: "auth_failed", connected: false, last_error: "invalid token" },
      storage: { ...influxdb, reachable: false, influxdb: { ...influxdb.influxdb!, spool_points: 1200, spool_bytes: 4096, quarantined: 3 } },
    });
    expect(w.map((x) => x.title)).toEqual([
      "Home Assistant refused HomeIQ's token",
      "InfluxDB is unreachable: spooling to disk",
      "3 points quarantined",
    ]);
    expect(w.every((x) => x.action.length > 10)).toBe(true);
  });
  it("speaks of the embedded store, never of InfluxDB, with embedded storage", () => {
    const w = warningsFor({ ...base, storage: { ...embedded, reachable: false, queued: 5, last_error: "disk I/O error" } });
    expect(w.map((x) => x.title)).toEqual(["The embedded history store cannot write"]);
    expect(JSON.stringify(w)).not.toMatch(/influx/i);
    const { container } = render(<StorageCard storage={embedded} />);
    expect(screen.getByRole("heading", { name: "Embedded storage" })).toBeTruthy();
    expect(container.textContent).toContain("Writing");
    expect(container.textContent).not.toMatch(/influx|spool|unreachable/i);
  });
  it("shows InfluxDB's spool with InfluxDB", () => {
    const { container } = render(<StorageCard storage={{ ...influxdb, influxdb: { ...influxdb.influxdb!, spool_points: 7 } }} />);
    expect(screen.getByRole("heading", { name: "InfluxDB" })).toBeTruthy();
    expect(container.textContent).toContain("Replaying spool");
    expect(container.textContent).toContain("spool");
  });
});

describe("helpers", () => {
  it("filters live events by domain, area and every word", () => {
    const e = { seq: 1, entity_id: "light.kitchen", domain: "light", area_id: "kitchen", time_fired: "", old_state: null,
      new_state: { entity_id: "light.kitchen", state: "on", attributes: { friendly_name: "Kitchen Lamp" }, last_changed: "", last_updated: "" } };
    expect(matches(e, { domain: "light", area: "kitchen", text: "lamp ON" })).toBe(true);
    expect(matches(e, { domain: "switch", area: "", text: "" })).toBe(false);
    expect(matches(e, { domain: "", area: "bedroom", text: "" })).toBe(false);
    expect(matches(e, { domain: "", area: "", text: "lamp off" })).toBe(false);
  });
  it("flattens settings to dotted keys", () => {
    expect(flatten({ http: { port: 8099, api_token: "***" }, include: { domains: [] } })).toEqual([
      ["http.port", "8099"], ["http.api_token", "***"], ["include.domains", "[]"],
    ]);
  });
  it("computes ranges", () => {
    expect(presetRange("7d", 1e12)).toEqual({ start: 1e12 - 7 * 86400e3, end: 1e12 });
    expect(toLocalInput(new Date(2026, 0, 2, 3, 4).getTime())).toBe("2026-01-02T03:04");
  });
});

describe("webhook target counters", () => {
  const counters = { success_count: 1200, failure_count: 3, dropped_count: 0, last_success_at: null, last_failure_at: null };
  const cells = (c: typeof counters) => {
    const { container } = render(
      <table>
        <tbody>
          <tr>
            <CounterCells counters={c} />
          </tr>
        </tbody>
      </table>,
    );
    return container.querySelector('[data-counter="dropped"]') as HTMLElement;
  };

  it("shows the dropped deliveries next to delivered and failed", () => {
    const dropped = cells({ ...counters, dropped_count: 2500 });
    expect(screen.getAllByRole("cell").map((c) => c.textContent)).toEqual([
      (1200).toLocaleString(),
      "3",
      `${(2500).toLocaleString()} deliveries dropped: the target's outbox was full`,
    ]);
    expect(dropped.className).toContain("dropped-some");
  });

  it("stays plain when nothing was dropped", () => {
    const dropped = cells(counters);
    expect(dropped.textContent).toBe("0");
    expect(dropped.className).not.toContain("dropped-some");
  });
});

describe("patterns", () => {
  const habit: Pattern = {
    id: "a1",
    kind: "time_of_day",
    entities: [{ entity_id: "light.kitchen", state: "on" }],
    day_type: "weekday",
    time_window: { start: "06:50", end: "07:05", centre: "06:57", spread_minutes: 4 },
    occurrences: 3,
    eligible_days: 4,
    confidence: 0.71,
    first_seen: "2026-03-02T05:55:00Z",
    last_seen: "2026-03-04T06:01:00Z",
    first_detected_at: "2026-03-05T02:00:00Z",
    run_id: 1,
    evidence: [
      { time: "2026-03-02T05:55:00Z", local_date: "2026-03-02", local_time: "06:55:00" },
      { time: "2026-03-03T05:58:00Z", local_date: "2026-03-03", local_time: "06:58:00" },
      { time: "2026-03-04T06:01:00Z", local_date: "2026-03-04", local_time: "07:01:00" },
    ],
  } as Pattern;

  it("says what a pattern is in words", () => {
    expect(describePattern(habit)).toBe("light.kitchen → on around 06:57 (06:50–07:05), on weekdays");
    const seq = { ...habit, kind: "co_occurrence", day_type: "all", time_window: undefined, entities: [{ entity_id: "binary_sensor.door", state: "on" }, { entity_id: "light.hall", state: "on" }], delay: { median_seconds: 45, min_seconds: 20, max_seconds: 80, iqr_seconds: 20 } } as Pattern;
    expect(describePattern(seq)).toMatch(/^binary_sensor.door → on, then light.hall → on after about /);
  });

  it("draws one dot per occurrence", () => {
    const { container } = render(<EvidenceChart p={habit} />);
    expect(container.querySelectorAll("circle").length).toBe(3);
    expect(container.querySelector("svg")?.getAttribute("aria-label")).toBe("3 occurrences");
  });
});

describe("evidence around midnight", () => {
  it("keeps 23:58 and 00:04 next to each other", () => {
    const p = {
      id: "m",
      kind: "time_of_day",
      entities: [{ entity_id: "light.bed", state: "off" }],
      day_type: "all",
      time_window: { start: "23:50", end: "00:06", centre: "23:59", spread_minutes: 3 },
      occurrences: 2,
      confidence: 0.9,
      first_seen: "2026-03-01T22:58:00Z",
      last_seen: "2026-03-02T23:04:00Z",
      first_detected_at: "2026-03-03T02:00:00Z",
      run_id: 1,
      evidence: [
        { time: "2026-03-01T22:58:00Z", local_date: "2026-03-01", local_time: "23:58:00" },
        { time: "2026-03-02T23:04:00Z", local_date: "2026-03-03", local_time: "00:04:00" },
      ],
    } as unknown as Pattern;
    const { container } = render(<EvidenceChart p={p} />);
    const ys = [...container.querySelectorAll("circle")].map((c) => Number(c.getAttribute("cy")));
    expect(ys.length).toBe(2);
    // the later time (00:04) is drawn higher (smaller y) than 23:58
    expect(ys[1]!).toBeLessThan(ys[0]!);
    expect(container.textContent).toContain("00:");
  });
});
