import { create } from "zustand";
import type { HaState, Realtime } from "./api";
import { api } from "./api";

// ---- theme: system by default, the choice persisted ----
export type ThemeMode = "system" | "light" | "dark";
export const THEME_KEY = "homeiq.theme";

function systemDark(): boolean {
  return typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;
}

export function resolveTheme(mode: ThemeMode): "light" | "dark" {
  return mode === "system" ? (systemDark() ? "dark" : "light") : mode;
}

function savedMode(): ThemeMode {
  try {
    const m = localStorage.getItem(THEME_KEY);
    if (m === "light" || m === "dark" || m === "system") return m;
  } catch {
    /* storage disabled */
  }
  return "system";
}

export function applyTheme(mode: ThemeMode) {
  document.documentElement.dataset.theme = resolveTheme(mode);
}

interface ThemeSlice {
  theme: ThemeMode;
  setTheme: (mode: ThemeMode) => void;
}

// ---- realtime metrics (polled, paused while the tab is hidden) ----
interface RealtimeSlice {
  realtime: Realtime | null;
  realtimeError: string | null;
  realtimeAt: number | null;
  loadRealtime: () => Promise<void>;
}

// ---- live events (pushed over SSE; the stream's payload is not in the OpenAPI document) ----
export interface LiveEvent {
  seq: number;
  entity_id: string;
  domain: string;
  area_id: string | null;
  old_state: HaState | null;
  new_state: HaState | null;
  time_fired: string;
  /** Who caused the change (absent from older servers). */
  origin?: { kind: string; id?: string | null };
}

export type LiveStatus = "connecting" | "open" | "closed";

interface LiveSlice {
  /** Newest first, at most `liveLimit`. */
  events: LiveEvent[];
  /** Arrived while paused, newest first, at most `liveLimit`. */
  pending: LiveEvent[];
  paused: boolean;
  liveLimit: number;
  liveStatus: LiveStatus;
  missed: number;
  pushEvent: (e: Omit<LiveEvent, "seq" | "domain">) => void;
  setPaused: (paused: boolean) => void;
  clearEvents: () => void;
  setLiveStatus: (s: LiveStatus) => void;
  addMissed: (n: number) => void;
}

export type Store = ThemeSlice & RealtimeSlice & LiveSlice;

let seq = 0;

export const useStore = create<Store>()((set, get) => ({
  theme: savedMode(),
  setTheme: (mode) => {
    try {
      localStorage.setItem(THEME_KEY, mode);
    } catch {
      /* storage disabled */
    }
    applyTheme(mode);
    set({ theme: mode });
  },

  realtime: null,
  realtimeError: null,
  realtimeAt: null,
  loadRealtime: async () => {
    try {
      const realtime = await api.realtime();
      set({ realtime, realtimeError: null, realtimeAt: Date.now() });
    } catch (e) {
      set({ realtimeError: e instanceof Error ? e.message : String(e) });
    }
  },

  events: [],
  pending: [],
  paused: false,
  liveLimit: 500,
  liveStatus: "closed",
  missed: 0,
  pushEvent: (e) => {
    const event: LiveEvent = { ...e, seq: ++seq, domain: e.entity_id.split(".")[0] ?? "" };
    const { paused, liveLimit } = get();
    if (paused) {
      set((s) => ({ pending: [event, ...s.pending].slice(0, liveLimit) }));
    } else {
      set((s) => ({ events: [event, ...s.events].slice(0, liveLimit) }));
    }
  },
  setPaused: (paused) => {
    if (paused) {
      set({ paused: true });
    } else {
      set((s) => ({
        paused: false,
        events: [...s.pending, ...s.events].slice(0, s.liveLimit),
        pending: [],
      }));
    }
  },
  clearEvents: () => set({ events: [], pending: [] }),
  setLiveStatus: (liveStatus) => set({ liveStatus }),
  addMissed: (n) => set((s) => ({ missed: s.missed + n })),
}));
