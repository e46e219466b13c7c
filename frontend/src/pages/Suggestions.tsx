import { useEffect, useMemo, useRef, useState } from "react";
import { Link } from "wouter";
import { api, ApiError, FieldError, type Pattern, type Suggestion, type SuggestionQuery, type SuggestionStatus } from "../api";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Empty, ErrorBox, Loading } from "../components/States";
import { fmtNumber, fmtTime } from "../format";
import { useApi } from "../hooks";
import { EvidenceChart, RunStatus } from "./Patterns";

const PAGE = 20;

export const STATUS_LABELS: Record<SuggestionStatus, string> = {
  new: "New",
  deployed: "Deployed",
  modified_in_ha: "Edited in Home Assistant",
  removed_in_ha: "Removed in Home Assistant",
  undone: "Undone",
  dismissed: "Dismissed",
};

const SOURCE_LABELS: Record<Suggestion["source"], string> = {
  pattern: "Learned",
  synergy: "Suggested from the registry",
};

type Action = "deploy" | "dismiss" | "undo";

/** What each status lets a person do. */
export function actionsFor(status: SuggestionStatus): Action[] {
  switch (status) {
    case "new":
    case "undone":
      return ["deploy", "dismiss"];
    case "deployed":
    case "modified_in_ha":
    case "removed_in_ha":
      return ["undo"];
    case "dismissed":
      return [];
  }
}

const ACTION_LABELS: Record<Action, string> = { deploy: "Deploy", dismiss: "Dismiss", undo: "Undo" };

/** An API error as the card shows it: the message and, when the server named one, the field. */
interface Problem {
  message: string;
  field?: string;
}

function problemOf(action: Action, e: unknown): Problem {
  const message = `Could not ${action}: ${e instanceof Error ? e.message : String(e)}`;
  return e instanceof FieldError ? { message, field: e.field } : { message };
}

interface Pending {
  action: Action;
  s: Suggestion;
  /** The 409 of an undo: the automation was edited in Home Assistant since. */
  conflict?: string;
  busy?: boolean;
}

function Confirm({ pending, onCancel, onRun }: { pending: Pending; onCancel: () => void; onRun: (force: boolean) => void }) {
  const { action, s, conflict, busy } = pending;
  const text: Record<Action, string> = {
    deploy: "HomeIQ checks every entity it names, Home Assistant validates it, then it is added to your automations (its id is shown below). You can undo it here.",
    dismiss: "It will not be offered again for this habit.",
    undo: "The automation is deleted from Home Assistant (or turned off where it cannot be deleted).",
  };
  return (
    <ConfirmDialog
      title={`${ACTION_LABELS[action]} “${s.title}”?`}
      onCancel={onCancel}
      actions={
        conflict ? (
          <button type="button" className="btn btn-danger" disabled={busy} onClick={() => onRun(true)}>
            Undo anyway
          </button>
        ) : (
          <button type="button" className={`btn ${action === "deploy" ? "btn-primary" : "btn-danger"}`} disabled={busy} onClick={() => onRun(false)}>
            {ACTION_LABELS[action]}
          </button>
        )
      }
    >
      <p>{text[action]}</p>
      <p className="muted small">
        Automation <code>{s.automation_id}</code>
      </p>
      {conflict && (
        <p className="error-text" role="alert">
          {conflict} Undoing anyway deletes your edits too.
        </p>
      )}
    </ConfirmDialog>
  );
}

function Evidence({ s, pattern }: { s: Suggestion; pattern: Pattern | undefined }) {
  if (s.source === "synergy") return null;
  const e = s.evidence;
  return (
    <>
      <p className="muted small">
        {e.out_of ? `${e.occurrences} of ${e.out_of}` : `${e.occurrences} times`}
        {e.confidence !== null && e.confidence !== undefined && ` · confidence ${Math.round(e.confidence * 100)}%`}
        {e.first_seen && e.last_seen && ` · seen ${fmtTime(e.first_seen)} – ${fmtTime(e.last_seen)}`}
        {s.pattern_id && (
          <>
            {" · "}
            <Link href="/patterns">pattern</Link>
          </>
        )}
      </p>
      {pattern && <EvidenceChart p={pattern} />}
    </>
  );
}

function InHa({ s }: { s: Suggestion }) {
  if (!["deployed", "modified_in_ha", "removed_in_ha"].includes(s.status)) return null;
  const entity = s.ha?.entity_id;
  return (
    <p className="small in-ha" data-testid="in-ha">
      In Home Assistant:{" "}
      {entity ? (
        <>
          <Link href={`/entities/${encodeURIComponent(entity)}`}>{entity}</Link>
          {s.ha?.state && ` (${s.ha.state === "on" ? "enabled" : s.ha.state === "off" ? "turned off" : s.ha.state})`}
        </>
      ) : s.status === "removed_in_ha" ? (
        "gone"
      ) : (
        "not seen yet"
      )}
      {s.status === "modified_in_ha" && " · edited there since HomeIQ deployed it"}
    </p>
  );
}

function SuggestionCard({
  s,
  rank,
  pattern,
  problem,
  onAction,
}: {
  s: Suggestion;
  rank: number;
  pattern: Pattern | undefined;
  problem: Problem | undefined;
  onAction: (a: Action) => void;
}) {
  const errorId = `suggestion-error-${s.id}`;
  return (
    <li className="suggestion pattern" data-suggestion={s.id} data-status={s.status} data-source={s.source} aria-labelledby={`suggestion-title-${s.id}`}>
      <div className="pattern-head">
        <h2 className="suggestion-title" id={`suggestion-title-${s.id}`}>
          <span className="rank">{rank}.</span> {s.title}
        </h2>
        <span className="badge score" title="Ranking score, 0–100: learned suggestions rank above the registry's">
          score {fmtNumber(s.score * 100, 0)}
        </span>
      </div>
      <p className="chips">
        <span className={`tag source-${s.source}`}>{SOURCE_LABELS[s.source]}</span>
        <span className={`tag status-${s.status}`} data-testid="status">
          {STATUS_LABELS[s.status]}
        </span>
        {s.notify_only && <span className="tag notify-only">Reminder only ({s.notify_only.replace("_", " ")})</span>}
        {s.area_id && <span className="tag">{s.area_id}</span>}
      </p>
      <p>{s.explanation}</p>
      <Evidence s={s} pattern={pattern} />
      <InHa s={s} />
      <details className="yaml" open>
        <summary>Automation (YAML)</summary>
        <pre tabIndex={0} aria-label={`YAML of ${s.title}`}>
          <code>{s.automation_yaml}</code>
        </pre>
      </details>
      {problem && (
        <p className="field-error suggestion-error" id={errorId} role="alert">
          {problem.message}
          {problem.field && (
            <>
              {" "}
              (field <code>{problem.field}</code>)
            </>
          )}
        </p>
      )}
      <div className="form-actions">
        {actionsFor(s.status).map((a) => (
          <button
            key={a}
            type="button"
            className={`btn${a === "deploy" ? " btn-primary" : ""}`}
            aria-label={`${ACTION_LABELS[a]} ${s.title}`}
            aria-describedby={problem ? errorId : undefined}
            onClick={() => onAction(a)}
          >
            {ACTION_LABELS[a]}
          </button>
        ))}
      </div>
    </li>
  );
}

function Pager({ offset, total, onPage }: { offset: number; total: number; onPage: (offset: number) => void }) {
  if (total <= PAGE) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <button type="button" className="btn" disabled={offset === 0} onClick={() => onPage(Math.max(0, offset - PAGE))}>
        Previous
      </button>
      <span className="muted small">
        {offset + 1}–{Math.min(offset + PAGE, total)} of {total}
      </span>
      <button type="button" className="btn" disabled={offset + PAGE >= total} onClick={() => onPage(offset + PAGE)}>
        Next
      </button>
    </nav>
  );
}

export default function Suggestions() {
  const [status, setStatus] = useState<SuggestionStatus | "">("");
  const [source, setSource] = useState<Suggestion["source"] | "">("");
  const [offset, setOffset] = useState(0);
  const [tick, setTick] = useState(0);
  const [pending, setPending] = useState<Pending | null>(null);
  const [problems, setProblems] = useState<Record<string, Problem>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const query: SuggestionQuery = { limit: PAGE, offset, ...(status && { status }), ...(source && { source }) };
  const list = useApi(`suggestions:${JSON.stringify(query)}:${tick}`, (signal) => api.suggestions(query, signal));
  const patterns = useApi(`patterns:${tick}`, (signal) => api.patterns({ limit: 1000 }, signal));
  const runs = useApi(`runs:${tick}`, (signal) => api.analysisRuns({ limit: 20 }, signal));
  // while a run is under way, look again every few seconds, and once more when it ended (its
  // suggestions are built right after it)
  const wasRunning = useRef(false);
  useEffect(() => {
    const running = runs.data?.running ?? false;
    const ended = wasRunning.current && !running;
    wasRunning.current = running;
    if (!running && !ended) return;
    const t = setTimeout(() => setTick((n) => n + 1), running ? 3000 : 1000);
    return () => clearTimeout(t);
  }, [runs.data]);
  const byPattern = useMemo(() => new Map((patterns.data?.items ?? []).map((p) => [p.id, p])), [patterns.data]);
  const filtered = status !== "" || source !== "";

  const run = async (force: boolean) => {
    if (!pending) return;
    const { action, s } = pending;
    setPending({ ...pending, busy: true });
    try {
      if (action === "deploy") {
        const answer = await api.deploySuggestion(s.id);
        setNotice(`Deployed “${s.title}”${answer.round_trip_ms !== null && answer.round_trip_ms !== undefined ? ` in ${answer.round_trip_ms} ms` : ""}.`);
      } else if (action === "dismiss") {
        await api.dismissSuggestion(s.id);
        setNotice(`Dismissed “${s.title}”.`);
      } else {
        const answer = await api.undoSuggestion(s.id, force);
        setNotice(`Undid “${s.title}” (${answer.how.replace("_", " ")}).`);
      }
      setProblems(({ [s.id]: _, ...rest }) => rest);
      setPending(null);
      setTick((n) => n + 1);
    } catch (e) {
      if (action === "undo" && !force && e instanceof ApiError && e.status === 409) {
        setPending({ action, s, conflict: e.message });
        return;
      }
      setPending(null);
      setNotice(null);
      setProblems((p) => ({ ...p, [s.id]: problemOf(action, e) }));
    }
  };

  const data = list.data;
  return (
    <div className="page page-suggestions">
      <h1>Suggestions</h1>
      <p className="muted">
        Automations HomeIQ proposes from the habits it learned, best first, and a few suggested from the registry (devices that share an area). Nothing reaches Home
        Assistant until you deploy it.
      </p>
      {(filtered || !data || data.total > 0) && (
      <div className="filters">
        <label>
          Status{" "}
          <select
            value={status}
            onChange={(e) => {
              setStatus(e.target.value as SuggestionStatus | "");
              setOffset(0);
            }}
          >
            <option value="">all</option>
            {Object.entries(STATUS_LABELS).map(([v, l]) => (
              <option key={v} value={v}>
                {l.toLowerCase()}
              </option>
            ))}
          </select>
        </label>
        <label>
          Source{" "}
          <select
            value={source}
            onChange={(e) => {
              setSource(e.target.value as Suggestion["source"] | "");
              setOffset(0);
            }}
          >
            <option value="">all</option>
            <option value="pattern">learned</option>
            <option value="synergy">from the registry</option>
          </select>
        </label>
        {data && (
          <span className="muted small" data-testid="suggestion-count">
            {data.total} suggestion{data.total === 1 ? "" : "s"}
          </span>
        )}
      </div>
      )}
      {notice && (
        <p className="small" role="status">
          {notice}
        </p>
      )}
      {list.error && <ErrorBox error={list.error} onRetry={list.reload} />}
      {!data && !list.error && <Loading label="Loading suggestions…" />}
      {data && data.total === 0 && filtered && <Empty>No suggestions match these filters.</Empty>}
      {data && data.total === 0 && !filtered && (
        <div className="suggestions-empty">
          <Empty>
            <strong>No suggestions yet.</strong> Suggestions come after an analysis: HomeIQ turns the habits it learns from your home's history into automations, and
            adds a few from the registry. An analysis runs every night; see what it learned on the <Link href="/patterns">Patterns</Link> page, or start one now.
          </Empty>
          {runs.error ? <ErrorBox error={runs.error} onRetry={runs.reload} /> : <RunStatus runs={runs.data} onStarted={() => setTick((n) => n + 1)} />}
        </div>
      )}
      {data && data.items.length > 0 && (
        <>
          <ol className="patterns suggestions" aria-label="Suggestions">
            {data.items.map((s, i) => (
              <SuggestionCard
                key={s.id}
                s={s}
                rank={data.offset + i + 1}
                pattern={s.pattern_id ? byPattern.get(s.pattern_id) : undefined}
                problem={problems[s.id]}
                onAction={(action) => setPending({ action, s })}
              />
            ))}
          </ol>
          <Pager
            offset={data.offset}
            total={data.total}
            onPage={(o) => {
              setOffset(o);
              window.scrollTo?.({ top: 0 });
            }}
          />
        </>
      )}
      {pending && <Confirm pending={pending} onCancel={() => setPending(null)} onRun={(force) => void run(force)} />}
    </div>
  );
}
