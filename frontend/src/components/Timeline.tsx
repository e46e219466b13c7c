import { useMemo } from "react";
import { recordState } from "../format";

export interface Segment {
  state: string;
  from: number; // ms
  to: number; // ms
}

const PALETTE = ["#03a9f4", "#ff9800", "#4caf50", "#9c27b0", "#e91e63", "#009688", "#795548", "#607d8b"];
/** The label of a record without a state (see `recordState`). */
export const NO_STATE = "not recorded";

const KNOWN: Record<string, string> = {
  on: "var(--state-on-color)",
  off: "var(--state-off-color)",
  unavailable: "var(--state-unavailable-color)",
  unknown: "var(--state-unavailable-color)",
  [NO_STATE]: "var(--state-unavailable-color)",
};

export function colorFor(state: string, index: number): string {
  return KNOWN[state] ?? PALETTE[index % PALETTE.length];
}

/** Turns state records (ascending) into segments covering [start, end]. */
export function toSegments(records: { time: string; state?: string | null; value?: number | null }[], start: number, end: number): Segment[] {
  const out: Segment[] = [];
  for (let i = 0; i < records.length; i++) {
    const from = Math.max(Date.parse(records[i].time), start);
    const to = i + 1 < records.length ? Math.min(Date.parse(records[i + 1].time), end) : end;
    if (to <= from) continue;
    const state = recordState(records[i]) ?? NO_STATE;
    const last = out[out.length - 1];
    if (last && last.state === state && last.to === from) last.to = to;
    else out.push({ state, from, to });
  }
  return out;
}

/** A state timeline: one coloured bar per state run, with a legend. */
export function Timeline({ segments, start, end }: { segments: Segment[]; start: number; end: number }) {
  const states = useMemo(() => Array.from(new Set(segments.map((s) => s.state))), [segments]);
  const span = Math.max(end - start, 1);
  return (
    <div className="timeline">
      <div className="timeline-bar" role="list" aria-label="State timeline">
        {segments.map((s, i) => (
          <div
            key={i}
            role="listitem"
            className="timeline-seg"
            title={`${s.state}: ${new Date(s.from).toLocaleString()} – ${new Date(s.to).toLocaleString()}`}
            aria-label={`${s.state} from ${new Date(s.from).toLocaleString()}`}
            style={{
              left: `${((s.from - start) / span) * 100}%`,
              width: `${Math.max(((s.to - s.from) / span) * 100, 0.2)}%`,
              background: colorFor(s.state, states.indexOf(s.state)),
            }}
          />
        ))}
      </div>
      <div className="timeline-axis">
        <span>{new Date(start).toLocaleString()}</span>
        <span>{new Date(end).toLocaleString()}</span>
      </div>
      <ul className="legend">
        {states.map((s, i) => (
          <li key={s}>
            <span className="swatch" style={{ background: colorFor(s, i) }} /> {s}
          </li>
        ))}
      </ul>
    </div>
  );
}
