import { beforeEach, describe, expect, it, vi } from "vitest";
import { apiUrl, getAll } from "./api";
import { THEME_KEY, useStore } from "./store";

const event = (entity_id: string, state: string) => ({
  entity_id,
  area_id: null,
  time_fired: new Date().toISOString(),
  old_state: null,
  new_state: { entity_id, state, attributes: {}, last_changed: "", last_updated: "" },
});

describe("live events", () => {
  beforeEach(() => useStore.setState({ events: [], pending: [], paused: false, liveLimit: 3 }));

  it("keeps the newest first, bounded to the limit", () => {
    const { pushEvent } = useStore.getState();
    for (let i = 1; i <= 5; i++) pushEvent(event("sensor.a", String(i)));
    const states = useStore.getState().events.map((e) => e.new_state?.state);
    expect(states).toEqual(["5", "4", "3"]);
    expect(useStore.getState().events[0].domain).toBe("sensor");
  });

  it("holds events back while paused and shows them on resume", () => {
    const s = useStore.getState();
    s.pushEvent(event("light.a", "on"));
    s.setPaused(true);
    s.pushEvent(event("light.a", "off"));
    s.pushEvent(event("light.b", "on"));
    expect(useStore.getState().events.map((e) => e.entity_id)).toEqual(["light.a"]);
    expect(useStore.getState().pending).toHaveLength(2);
    useStore.getState().setPaused(false);
    const after = useStore.getState();
    expect(after.pending).toHaveLength(0);
    expect(after.events.map((e) => `${e.entity_id}=${e.new_state?.state}`)).toEqual(["light.b=on", "light.a=off", "light.a=on"]);
  });

  it("does not notify subscribers of unrelated slices", () => {
    const seen = vi.fn();
    const unsub = useStore.subscribe((s, prev) => {
      if (s.theme !== prev.theme) seen();
    });
    useStore.getState().pushEvent(event("sensor.a", "1"));
    expect(seen).not.toHaveBeenCalled();
    unsub();
  });
});

describe("theme", () => {
  it("persists the choice and applies it", () => {
    useStore.getState().setTheme("dark");
    expect(localStorage.getItem(THEME_KEY)).toBe("dark");
    expect(document.documentElement.dataset.theme).toBe("dark");
    useStore.getState().setTheme("light");
    expect(document.documentElement.dataset.theme).toBe("light");
  });
});

describe("api", () => {
  it("builds relative URLs only", () => {
    expect(apiUrl("devices", { q: "kitchen lamp", area: "", limit: 5, x: undefined })).toBe("api/v1/devices?q=kitchen+lamp&limit=5");
    expect(apiUrl("/metrics/realtime")).toBe("api/v1/metrics/realtime");
  });

  it("pages through a list", async () => {
    const calls: string[] = [];
    vi.stubGlobal("fetch", async (url: string) => {
      calls.push(url);
      const offset = Number(new URL(url, "http://x/").searchParams.get("offset"));
      const items = Array.from({ length: Math.min(1000, 2500 - offset) }, (_, i) => offset + i);
      return new Response(JSON.stringify({ total: 2500, limit: 1000, offset, items }));
    });
    const all = await getAll<number>("devices", { area: "kitchen" });
    expect(all).toHaveLength(2500);
    expect(all[2499]).toBe(2499);
    expect(calls.every((c) => c.startsWith("api/v1/devices?area=kitchen&limit=1000&offset="))).toBe(true);
    vi.unstubAllGlobals();
  });

  it("refreshes the realtime metrics and keeps the error", async () => {
    vi.stubGlobal("fetch", async () => new Response(JSON.stringify({ error: { message: "boom" } }), { status: 503 }));
    await useStore.getState().loadRealtime();
    expect(useStore.getState().realtimeError).toBe("boom");
    vi.unstubAllGlobals();
  });
});
