import { beforeEach, describe, expect, it, vi } from "vitest";
import { allDevices, api, ApiError, FieldError } from "./api";
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
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  /** Serves `answer` for every request, recording the requests. */
  const serve = (answer: (r: Request) => Response) => {
    const seen: Request[] = [];
    vi.stubGlobal("fetch", async (r: Request) => {
      seen.push(r);
      return answer(r);
    });
    return seen;
  };
  const withBase = (href: string) => {
    const base = document.createElement("base");
    base.href = href;
    document.head.append(base);
    return () => base.remove();
  };

  it("stays under the ingress prefix (<base href>) and sends no token", async () => {
    const unbase = withBase("/api/hassio_ingress/tok3n/");
    const seen = serve(() => json({ total: 0, limit: 5, offset: 0, items: [] }));
    await api.devices({ q: "kitchen lamp", area: undefined, limit: 5 });
    await api.entity("sensor.a/b");
    unbase();
    vi.unstubAllGlobals();
    const urls = seen.map((r) => new URL(r.url));
    expect(urls.map((u) => u.pathname)).toEqual(["/api/hassio_ingress/tok3n/api/v1/devices", "/api/hassio_ingress/tok3n/api/v1/entities/sensor.a%2Fb"]);
    expect(urls[0].searchParams.get("q")).toBe("kitchen lamp");
    expect([...urls[0].searchParams.keys()]).toEqual(["q", "limit"]);
    expect(urls[0].origin).toBe(location.origin);
    expect(seen.every((r) => r.headers.get("Accept") === "application/json" && !r.headers.has("Authorization"))).toBe(true);
  });

  it("pages through a list", async () => {
    const seen = serve((r) => {
      const offset = Number(new URL(r.url).searchParams.get("offset"));
      const items = Array.from({ length: Math.min(1000, 2500 - offset) }, (_, i) => ({ id: `d${offset + i}` }));
      return json({ total: 2500, limit: 1000, offset, items });
    });
    const all = await allDevices({ area: "kitchen" });
    vi.unstubAllGlobals();
    expect(all).toHaveLength(2500);
    expect(all[2499].id).toBe("d2499");
    expect(seen.map((r) => new URL(r.url).search)).toEqual([0, 1000, 2000].map((o) => `?area=kitchen&limit=1000&offset=${o}`));
  });

  it("turns error answers into errors naming the API's message and field", async () => {
    serve(() => json({ error: { code: "bad_request", message: "rules[0].above: not a number", field: "rules[0].above" } }, 400));
    const body = { name: "x", kind: "http" as const, url: "http://h/", rules: [{ above: "abc" }] };
    const e = await api.createWebhook(body).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FieldError);
    expect(e).toMatchObject({ status: 400, message: "rules[0].above: not a number", field: "rules[0].above" });
    serve(() => new Response("upstream down", { status: 502, statusText: "Bad Gateway" }));
    const plain = await api.areas().catch((x: unknown) => x);
    expect(plain).toBeInstanceOf(ApiError);
    expect(plain).not.toBeInstanceOf(FieldError);
    expect(plain).toMatchObject({ status: 502, message: "502 Bad Gateway" });
    serve(() => new Response(null, { status: 204 }));
    await expect(api.deleteWebhook("w1")).resolves.toBeUndefined();
    vi.unstubAllGlobals();
  });

  it("refreshes the realtime metrics and keeps the error", async () => {
    vi.stubGlobal("fetch", async () => new Response(JSON.stringify({ error: { message: "boom" } }), { status: 503 }));
    await useStore.getState().loadRealtime();
    expect(useStore.getState().realtimeError).toBe("boom");
    vi.unstubAllGlobals();
  });
});

describe("origin", () => {
  it("says who caused a change in words", async () => {
    const { fmtOrigin } = await import("./format");
    expect(fmtOrigin({ kind: "automation", id: "automation.wake_up" })).toBe("automation: automation.wake_up");
    expect(fmtOrigin({ kind: "user", id: "abc123" })).toBe("person");
    expect(fmtOrigin({ kind: "system", id: "sup" })).toBe("add-on / system");
    expect(fmtOrigin({ kind: "device" })).toBe("device");
    expect(fmtOrigin(undefined)).toBe("unknown");
  });
});
