export function fmtNumber(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtDuration(secs: number | null | undefined): string {
  if (secs === null || secs === undefined) return "—";
  const s = Math.round(secs);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** The text of a history record's state: the state string, else its number (InfluxDB records whose
 * schema stored only the value have no state string), else null (nothing recorded). */
export function recordState(r: { state?: string | null; value?: number | null }): string | null {
  if (r.state !== null && r.state !== undefined) return r.state;
  if (r.value !== null && r.value !== undefined) return String(r.value);
  return null;
}

/** A state as a number, or null when it is not numeric. */
export function numeric(state: string | null | undefined): number | null {
  if (state === null || state === undefined || state.trim() === "") return null;
  const n = Number(state);
  return Number.isFinite(n) ? n : null;
}

/** Who caused a change, in words: "person", "automation: automation.wake_up", "device", … */
export function fmtOrigin(o: { kind: string; id?: string | null } | null | undefined): string {
  if (!o || o.kind === "unknown") return "unknown";
  const label: Record<string, string> = { user: "person", automation: "automation", script: "script", system: "add-on / system", device: "device" };
  const name = label[o.kind] ?? o.kind;
  return o.id && (o.kind === "automation" || o.kind === "script") ? `${name}: ${o.id}` : name;
}
