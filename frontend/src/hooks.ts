import { useEffect, useRef, useState } from "react";
import { useStore } from "./store";

/** A value that follows `value` after `ms` without changes. */
export function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
}

/**
 * Runs `load` (an `api` call) whenever `key` changes; `null` skips. `key` names the request:
 * everything `load` depends on must be in it.
 */
export function useApi<T>(key: string | null, load: (signal: AbortSignal) => Promise<T>): Loaded<T> & { reload: () => void } {
  const [state, setState] = useState<Loaded<T>>({ data: null, error: null, loading: key !== null });
  const [tick, setTick] = useState(0);
  const loader = useRef(load);
  loader.current = load;
  useEffect(() => {
    if (key === null) return;
    const ctl = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    loader
      .current(ctl.signal)
      .then((data) => setState({ data, error: null, loading: false }))
      .catch((e) => {
        if (ctl.signal.aborted) return;
        setState({ data: null, error: e instanceof Error ? e.message : String(e), loading: false });
      });
    return () => ctl.abort();
  }, [key, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

/** Polls the realtime metrics every `ms` while the tab is visible (one poller per mount). */
export function useRealtimePolling(ms = 5000) {
  const load = useStore((s) => s.loadRealtime);
  useEffect(() => {
    let timer: ReturnType<typeof setInterval> | null = null;
    const start = () => {
      if (timer) return;
      void load();
      timer = setInterval(() => void load(), ms);
    };
    const stop = () => {
      if (timer) clearInterval(timer);
      timer = null;
    };
    const onVisibility = () => (document.hidden ? stop() : start());
    if (!document.hidden) start();
    document.addEventListener("visibilitychange", onVisibility);
    return () => {
      stop();
      document.removeEventListener("visibilitychange", onVisibility);
    };
  }, [load, ms]);
}

/** Keeps one EventSource on `api/v1/stream` open while mounted, feeding the store. */
export function useLiveStream() {
  const push = useStore((s) => s.pushEvent);
  const setStatus = useStore((s) => s.setLiveStatus);
  const addMissed = useStore((s) => s.addMissed);
  const source = useRef<EventSource | null>(null);
  useEffect(() => {
    const es = new EventSource("api/v1/stream");
    source.current = es;
    setStatus("connecting");
    es.addEventListener("hello", () => setStatus("open"));
    es.onopen = () => setStatus("open");
    es.onerror = () => setStatus(es.readyState === EventSource.CLOSED ? "closed" : "connecting");
    es.addEventListener("state_changed", (ev) => {
      try {
        push(JSON.parse((ev as MessageEvent).data));
      } catch {
        /* malformed event: ignored */
      }
    });
    es.addEventListener("lagged", (ev) => {
      try {
        addMissed(Number(JSON.parse((ev as MessageEvent).data).missed) || 0);
      } catch {
        addMissed(0);
      }
    });
    return () => {
      es.close();
      setStatus("closed");
    };
  }, [push, setStatus, addMissed]);
}
