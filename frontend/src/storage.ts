// The Storage page's wording and state logic, kept apart from the page so it is unit-tested.
import type { ImportStatus, StorageGuard, StorageLevel, TierView } from "./api";
import { fmtBytes, fmtNumber, fmtTime } from "./format";

/** The guard's level in words (shown next to its colour, never colour alone). */
export function levelText(g: Pick<StorageGuard, "level" | "used_percent" | "warning_percent" | "critical_percent">): { label: string; detail: string } {
  const used = g.used_percent === null || g.used_percent === undefined ? null : `${fmtNumber(g.used_percent, 1)} % used`;
  const labels: Record<StorageLevel, string> = { ok: "OK", warning: "Warning", critical: "Critical", unknown: "Unknown" };
  const details: Record<StorageLevel, string> = {
    ok: `${used ?? "Usage unknown"}; a warning comes at ${g.warning_percent} %.`,
    warning: `${used ?? "Usage unknown"}: over the warning threshold of ${g.warning_percent} %. Free some space or shorten retention.`,
    critical: `${used ?? "Usage unknown"}: over the critical threshold of ${g.critical_percent} %. HomeIQ is protecting the device.`,
    unknown: "The disk could not be measured.",
  };
  return { label: labels[g.level], detail: details[g.level] };
}

/** Days until the disk is full, in words. `growth` is the disk's growth per day (null: not measured yet). */
export function fmtDaysUntilFull(days: number | null | undefined, growth: number | null | undefined): { text: string; hint?: string } {
  if (days === null || days === undefined || !Number.isFinite(days)) {
    return growth === null || growth === undefined
      ? { text: "Not known yet", hint: "growth is measured over an hour" }
      : { text: "Not filling up", hint: "the disk does not grow" };
  }
  if (days <= 0) return { text: "Full now" };
  if (days < 1) return { text: "Less than a day" };
  if (days < 2) return { text: "About a day" };
  if (days < 14) return { text: `About ${Math.round(days)} days` };
  if (days < 61) return { text: `About ${Math.round(days / 7)} weeks` };
  if (days < 730) return { text: `About ${Math.round(days / 30.44)} months` };
  return { text: `More than ${Math.floor(days / 365.25)} years` };
}

/** A growth per day: "+1.2 MB a day", "−300 KB a day", "—" while not measured. */
export function fmtGrowth(bytesPerDay: number | null | undefined): string {
  if (bytesPerDay === null || bytesPerDay === undefined || !Number.isFinite(bytesPerDay)) return "not measured yet";
  if (Math.round(bytesPerDay) === 0) return "no growth";
  const sign = bytesPerDay > 0 ? "+" : "−";
  return `${sign}${fmtBytes(Math.abs(bytesPerDay))} a day`;
}

/** A retention period: `null` is forever. */
export function fmtDays(days: number | null | undefined): string {
  if (days === null || days === undefined) return "forever";
  return days === 1 ? "1 day" : `${fmtNumber(days)} days`;
}

const STORE_NAMES: Record<string, string> = {
  history: "History (embedded)",
  metadata: "Metadata",
  rollups: "Rollups",
  spool: "InfluxDB spool",
  influxdb_sidecar: "InfluxDB (bundled)",
};

/** A store's name in words (an unknown one as it comes). */
export function storeName(kind: string): string {
  return STORE_NAMES[kind] ?? humanKey(kind);
}

/** `days_in_effect` → "Days in effect". */
export function humanKey(key: string): string {
  const s = key.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

type TierRow = TierView & Record<string, unknown>;

/**
 * The columns of the Tiers table: every field any tier has besides `tier`, in the order they first
 * appear, so fields added to the API later show without code changes.
 */
export function tierColumns(tiers: readonly TierView[]): string[] {
  const seen: string[] = [];
  for (const t of tiers as readonly TierRow[]) {
    for (const k of Object.keys(t)) if (k !== "tier" && !seen.includes(k)) seen.push(k);
  }
  return seen;
}

/** A tier field's value for the table, by its name: sizes in bytes, days, times, counts. */
export function fmtTierValue(key: string, value: unknown): string {
  if (key === "days" || key.startsWith("days_") || key.endsWith("_days")) {
    return value === null ? "forever" : typeof value === "number" ? fmtDays(value) : value === undefined ? "—" : String(value);
  }
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    if (key === "bytes" || key.endsWith("_bytes")) return fmtBytes(value);
    return fmtNumber(value, 2);
  }
  if (typeof value === "string") return key.endsWith("_at") || key === "oldest" || key === "newest" ? fmtTime(value) : value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  return JSON.stringify(value);
}

/** The tier's name in words. */
export function tierName(tier: string): string {
  const names: Record<string, string> = { raw: "Raw points", "5m": "5-minute rollups", "1h": "Hourly rollups", "1d": "Daily rollups", imported: "Imported from Home Assistant" };
  return names[tier] ?? tier;
}

type Run = NonNullable<ImportStatus["run"]>;

/** Where an import stands: the phase in words and its share done (null when nothing is planned yet). */
export function importProgress(run: Run): { phase: string; done: number; total: number; percent: number | null } {
  const { states, statistics } = run;
  const total = states.total + statistics.total;
  const done = states.done + statistics.done;
  const phases: Record<Run["position"]["phase"], string> = {
    planning: "Planning",
    states: "Importing states",
    statistics: "Importing long-term statistics",
    done: "Done",
  };
  const where = phases[run.position.phase].toLowerCase();
  const phase =
    run.status === "running" ? phases[run.position.phase] : run.status === "succeeded" ? phases.done : `Stopped while ${run.position.phase === "done" ? "finishing" : where}`;
  return { phase, done, total, percent: total > 0 ? Math.min(100, Math.round((done / total) * 100)) : null };
}

/** An import's status in words. */
export function importStatusText(s: Run["status"]): string {
  return { running: "Running", succeeded: "Finished", failed: "Failed", interrupted: "Interrupted" }[s];
}

/** The delay before the next look at a running import: 1 s, then ×1.5 up to 10 s. */
export function nextPollDelay(previous: number | null): number {
  if (previous === null) return 1000;
  return Math.min(10_000, Math.round(previous * 1.5));
}
