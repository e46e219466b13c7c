import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { ImportStatus, StorageView } from "./api";
import Storage from "./pages/Storage";
import { fmtDaysUntilFull, fmtGrowth, fmtTierValue, importProgress, levelText, nextPollDelay, tierColumns } from "./storage";

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

function storageView(over: Partial<StorageView["guard"]> = {}, tiers: StorageView["tiers"] = [{ tier: "raw", setting: "retention.raw_days", days: 30, days_in_effect: 30 }]): StorageView {
  return {
    backend: "embedded",
    tiers,
    guard: {
      level: "ok", data_dir: "/data", disk: { total_bytes: 32 * 2 ** 30, used_bytes: 10 * 2 ** 30, available_bytes: 22 * 2 ** 30 }, used_percent: 31.25,
      warning_percent: 80, critical_percent: 90, stores: [{ store: "history", path: "/data/history.db", bytes: 5 * 2 ** 20 }], homeiq_bytes: 5 * 2 ** 20,
      growth_bytes_per_day: 2 ** 20, homeiq_growth_bytes_per_day: 2 ** 19, days_until_full: 400, heartbeat_paused: false, raw_retention_shortened: false,
      checked_at: "2026-01-01T00:00:00Z", error: null, ...over,
    },
    retention: {
      raw_days: 30, raw_days_in_effect: 30, shortened: false, rolled_up_until: null, last_run: null, next_run_at: null, conversion: null,
      counts: { runs: 0, points_deleted: 0, shards_dropped: 0, failures: 0, held_by_rollups: 0 },
    },
  };
}

type Run = NonNullable<ImportStatus["run"]>;
function run(over: Partial<Run> = {}): Run {
  return {
    id: 1, trigger: "manual", status: "running", started_at: "2026-01-01T00:00:00Z", finished_at: null, error: null, planned_at: null, recorder_oldest_state: null,
    states: { total: 10, done: 5, imported: 100, skipped: 2 }, statistics: { total: 10, done: 0, imported: 0, skipped: 0 }, external_statistics_skipped: 0,
    requests: 3, position: { phase: "states", batch: 1, batches: 4, window_start: null }, ...over,
  };
}
function importStatus(r: Run | null): ImportStatus {
  return { running: r?.status === "running", on_first_start: true, requests_per_second: 5, run: r, counts: { runs: 1, failures: 0, requests: 3, states: 100, statistics_rows: 0 } };
}

/** A fake server: the storage answer, import statuses in turn (the last one repeats), POSTs by `post`. */
function serve(storage: StorageView, statuses: ImportStatus[], post: () => Response = () => json(202, statuses[0])) {
  const sent: string[] = [];
  let i = 0;
  vi.stubGlobal("fetch", async (req: Request) => {
    const u = new URL(req.url);
    sent.push(`${req.method} ${u.pathname}`);
    if (req.method === "POST") return post();
    if (u.pathname.endsWith("/api/v1/storage")) return json(200, storage);
    if (u.pathname.endsWith("/api/v1/import")) return json(200, statuses[Math.min(i++, statuses.length - 1)]);
    return json(404, { error: { code: "not_found", message: "no route" } });
  });
  return sent;
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe("storage wording", () => {
  it("says days until full in words", () => {
    expect(fmtDaysUntilFull(null, null)).toEqual({ text: "Not known yet", hint: "growth is measured over an hour" });
    expect(fmtDaysUntilFull(null, 0).text).toBe("Not filling up");
    expect(fmtDaysUntilFull(0, 10).text).toBe("Full now");
    expect(fmtDaysUntilFull(0.4, 10).text).toBe("Less than a day");
    expect(fmtDaysUntilFull(1.2, 10).text).toBe("About a day");
    expect(fmtDaysUntilFull(9.6, 10).text).toBe("About 10 days");
    expect(fmtDaysUntilFull(30, 10).text).toBe("About 4 weeks");
    expect(fmtDaysUntilFull(200, 10).text).toBe("About 7 months");
    expect(fmtDaysUntilFull(1000, 10).text).toBe("More than 2 years");
  });

  it("gives growth with its sign and unit", () => {
    expect(fmtGrowth(null)).toBe("not measured yet");
    expect(fmtGrowth(0.2)).toBe("no growth");
    expect(fmtGrowth(1.5 * 2 ** 20)).toBe("+1.5 MB a day");
    expect(fmtGrowth(-2048)).toBe("−2.0 KB a day");
  });

  it("names the level in words, not colour alone", () => {
    const g = { used_percent: 85.04, warning_percent: 80, critical_percent: 90 };
    expect(levelText({ ...g, level: "warning" })).toEqual({ label: "Warning", detail: expect.stringContaining("85 % used: over the warning threshold of 80 %") });
    expect(levelText({ ...g, level: "critical" }).label).toBe("Critical");
    expect(levelText({ ...g, used_percent: null, level: "unknown" }).detail).toMatch(/could not be measured/);
  });

  it("builds the tiers table from whatever fields the tiers have", () => {
    const tiers = [
      { tier: "raw", setting: "retention.raw_days", days: 30, days_in_effect: 14 },
      { tier: "1h", setting: "retention.hourly_days", days: null, rows: 1234567, bytes: 3 * 2 ** 20 },
    ] as unknown as StorageView["tiers"];
    expect(tierColumns(tiers)).toEqual(["setting", "days", "days_in_effect", "rows", "bytes"]);
    expect(fmtTierValue("days", null)).toBe("forever");
    expect(fmtTierValue("days_in_effect", 14)).toBe("14 days");
    expect(fmtTierValue("days_in_effect", undefined)).toBe("—");
    expect(fmtTierValue("bytes", 3 * 2 ** 20)).toBe("3.0 MB");
    expect(fmtTierValue("size_bytes", 512)).toBe("512 B");
    expect(fmtTierValue("rows", 1234567)).toBe((1234567).toLocaleString());
    expect(fmtTierValue("setting", "retention.raw_days")).toBe("retention.raw_days");
  });

  it("measures an import's progress over both phases", () => {
    expect(importProgress(run())).toEqual({ phase: "Importing states", done: 5, total: 20, percent: 25 });
    expect(importProgress(run({ states: { total: 0, done: 0, imported: 0, skipped: 0 }, statistics: { total: 0, done: 0, imported: 0, skipped: 0 }, position: { phase: "planning", batch: 0, batches: 0 } })).percent).toBeNull();
    expect(importProgress(run({ status: "failed", position: { phase: "statistics", batch: 0, batches: 1 } })).phase).toBe("Stopped while importing long-term statistics");
    expect(importProgress(run({ status: "succeeded" })).phase).toBe("Done");
  });

  it("backs off while polling, up to 10 s", () => {
    const delays = [nextPollDelay(null)];
    for (let i = 0; i < 8; i++) delays.push(nextPollDelay(delays[delays.length - 1]!));
    expect(delays.slice(0, 4)).toEqual([1000, 1500, 2250, 3375]);
    expect(delays[delays.length - 1]).toBe(10_000);
  });
});

describe("storage page", () => {
  it("shows a warning in words, sizes, days until full, and hides Tiers without tiers", async () => {
    serve(storageView({ level: "warning", used_percent: 84, days_until_full: 12 }, []), [importStatus(null)]);
    render(<Storage />);
    expect((await screen.findByTestId("storage-level")).textContent).toMatch(/Warning.*84 % used: over the warning threshold of 80 %/);
    expect(screen.getByText("About 12 days")).toBeTruthy();
    expect(screen.getAllByText("5.0 MB").length).toBeGreaterThan(0);
    expect(screen.getByText("+1.0 MB a day")).toBeTruthy();
    expect(screen.queryByRole("heading", { name: "Tiers" })).toBeNull();
    expect(await screen.findByText(/No import yet/)).toBeTruthy();
  });

  it("shows the tiers table when the answer has tiers", async () => {
    serve(storageView(), [importStatus(null)]);
    render(<Storage />);
    expect(await screen.findByRole("heading", { name: "Tiers" })).toBeTruthy();
    expect(screen.getByRole("rowheader", { name: "Raw points" })).toBeTruthy();
    expect(screen.getByRole("columnheader", { name: "Days in effect" })).toBeTruthy();
  });

  it("shows the storage error with a retry", async () => {
    vi.stubGlobal("fetch", async () => json(503, { error: { code: "unavailable", message: "disk gone" } }));
    render(<Storage />);
    expect(((await screen.findAllByRole("alert"))[0]).textContent).toMatch("disk gone");
  });

  it("confirms, starts an import and polls until it ends, then stops", async () => {
    const done = run({ status: "succeeded", finished_at: "2026-01-01T00:10:00Z", position: { phase: "done", batch: 0, batches: 0 } });
    const sent = serve(storageView(), [importStatus(null), importStatus(run()), importStatus(done)], () => json(202, importStatus(run())));
    render(<Storage />);
    fireEvent.click(await screen.findByRole("button", { name: "Import now" }));
    await act(async () => fireEvent.click(await screen.findByRole("button", { name: "Import" })));
    expect(sent).toContain("POST /api/v1/import");
    expect((await screen.findByRole<HTMLButtonElement>("button", { name: "Importing…" })).disabled).toBe(true);
    await waitFor(() => expect((screen.getByTestId("import-run")).getAttribute("data-status")).toBe("succeeded"), { timeout: 4000 });
    const looks = sent.filter((s) => s === "GET /api/v1/import").length;
    // the storage is read again once the import ended
    await waitFor(() => expect(sent.filter((s) => s === "GET /api/v1/storage").length).toBe(2));
    await new Promise((r) => setTimeout(r, 1200));
    expect(sent.filter((s) => s === "GET /api/v1/import").length).toBe(looks);
  });

  it("says so when an import is already under way (409)", async () => {
    serve(storageView(), [importStatus(run({ status: "failed", error: "boom" }))], () => json(409, { error: { code: "conflict", message: "an import is under way" } }));
    render(<Storage />);
    expect(await screen.findByText("Failed: boom")).toBeTruthy();
    fireEvent.click(await screen.findByRole("button", { name: "Resume import" }));
    await act(async () => fireEvent.click(await screen.findByRole("button", { name: "Import" })));
    const alert = await screen.findByText(/An import is already under way/);
    expect((alert).getAttribute("role")).toBe("alert");
    expect((screen.getByRole("button", { name: "Resume import" })).getAttribute("aria-describedby")).toBe(alert.id);
  });
});
