import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Suggestion } from "./api";
import Suggestions, { actionsFor } from "./pages/Suggestions";

function suggestion(over: Partial<Suggestion>): Suggestion {
  return {
    id: "p1", status: "new", source: "pattern", kind: "time_of_day", pattern_id: null, area_id: "kitchen", entities: ["light.kitchen"],
    title: "Turn on Kitchen light around 06:55", explanation: "9 of 10 days.", wording: "template",
    evidence: { occurrences: 9, out_of: 10, confidence: 0.9, first_seen: null, last_seen: null }, score: 0.9, notify_only: null,
    automation_id: "homeiq_p1", automation: {}, automation_yaml: "id: homeiq_p1\nalias: Turn on\n", ha: null, version: 1,
    created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-01T00:00:00Z", ...over,
  };
}

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** A fake server: GETs from `items`, POSTs answered by `post`. Every request is recorded. */
function serve(items: Suggestion[], post: (path: string, body: string) => Response) {
  const sent: { method: string; path: string; body: string }[] = [];
  vi.stubGlobal("fetch", async (req: Request) => {
    const u = new URL(req.url);
    const body = req.method === "POST" ? await req.text() : "";
    sent.push({ method: req.method, path: u.pathname + u.search, body });
    if (req.method === "POST") return post(u.pathname, body);
    if (u.pathname.endsWith("/api/v1/suggestions")) return json(200, { total: items.length, limit: 20, offset: 0, items });
    if (u.pathname.endsWith("/api/v1/patterns")) return json(200, { total: 0, limit: 1000, offset: 0, items: [] });
    if (u.pathname.endsWith("/api/v1/analysis/runs")) return json(200, { running: false, items: [], next_before: null });
    return json(404, { error: { code: "not_found", message: "no route" } });
  });
  return sent;
}

afterEach(() => vi.unstubAllGlobals());

describe("suggestions page", () => {
  it("offers what each status allows", () => {
    expect(actionsFor("new")).toEqual(["deploy", "dismiss"]);
    expect(actionsFor("deployed")).toEqual(["undo"]);
    expect(actionsFor("modified_in_ha")).toEqual(["undo"]);
    expect(actionsFor("dismissed")).toEqual([]);
  });

  it("shows a refused deploy in place, with the field Home Assistant named", async () => {
    const s = suggestion({});
    serve([s], () => json(422, { error: { code: "ha_refused", message: "Home Assistant refused it: unknown trigger", field: "triggers[0].trigger" } }));
    render(<Suggestions />);
    fireEvent.click(await screen.findByRole("button", { name: `Deploy ${s.title}` }));
    await act(async () => fireEvent.click(await screen.findByRole("button", { name: "Deploy" })));
    const alert = await screen.findByText(/Could not deploy: Home Assistant refused it/);
    expect(alert.textContent).toContain("triggers[0].trigger");
    expect(screen.getByRole("button", { name: `Deploy ${s.title}` }).getAttribute("aria-describedby")).toBe(alert.id);
  });

  it("offers to undo anyway when the automation was edited in Home Assistant (409), sending force", async () => {
    const s = suggestion({ status: "modified_in_ha", ha: { entity_id: "automation.turn_on", state: "on" } });
    const sent = serve([s], (_path, body) =>
      JSON.parse(body || "{}").force
        ? json(200, { how: "deleted", suggestion: { ...s, status: "undone" } })
        : json(409, { error: { code: "conflict", message: "The automation was edited in Home Assistant since." } }),
    );
    render(<Suggestions />);
    expect(await screen.findByText("Edited in Home Assistant")).toBeTruthy();
    fireEvent.click(await screen.findByRole("button", { name: `Undo ${s.title}` }));
    await act(async () => fireEvent.click(await screen.findByRole("button", { name: "Undo" })));
    await act(async () => fireEvent.click(await screen.findByRole("button", { name: "Undo anyway" })));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    const undos = sent.filter((r) => r.method === "POST");
    expect(undos.map((r) => JSON.parse(r.body).force)).toEqual([false, true]);
    expect(undos.every((r) => r.path.endsWith("/api/v1/suggestions/p1/undo"))).toBe(true);
  });
});
