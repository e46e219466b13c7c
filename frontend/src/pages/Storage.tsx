import { useCallback, useEffect, useId, useRef, useState } from "react";
import { api, ApiError, type ImportStatus, type RetentionStatus, type StorageGuard, type StorageView } from "../api";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Card, Empty, ErrorBox, Loading, Stat } from "../components/States";
import { fmtBytes, fmtNumber, fmtTime } from "../format";
import { useApi } from "../hooks";
import {
  fmtDays,
  fmtDaysUntilFull,
  fmtGrowth,
  fmtTierValue,
  humanKey,
  importProgress,
  importStatusText,
  levelText,
  nextPollDelay,
  storeName,
  tierColumns,
  tierName,
} from "../storage";

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The level at a glance: a coloured banner that also says it in words. */
function LevelBanner({ g }: { g: StorageGuard }) {
  const { label, detail } = levelText(g);
  const tone = g.level === "ok" ? "ok" : g.level === "critical" ? "error" : "warning";
  return (
    <div className={`banner ${tone} storage-level level-${g.level}`} data-testid="storage-level">
      <strong>
        <span className={`tag level level-${g.level}`}>{label}</span> Disk: {detail}
      </strong>
      {g.heartbeat_paused && <div className="banner-action">Heartbeat rewrites are paused to save space.</div>}
      {g.raw_retention_shortened && <div className="banner-action">Raw retention is shortened until space returns.</div>}
      {g.error && <div className="banner-action">Could not read the file system: {g.error}</div>}
    </div>
  );
}

function DiskCard({ g }: { g: StorageGuard }) {
  const used = g.used_percent ?? null;
  const full = fmtDaysUntilFull(g.days_until_full, g.growth_bytes_per_day);
  return (
    <Card title="Disk" className="disk-card">
      {g.disk && used !== null && (
        <div className="usage" aria-hidden="true">
          <div className={`usage-bar level-${g.level}`} style={{ width: `${Math.min(100, Math.max(0, used))}%` }} />
          <div className="usage-mark" style={{ left: `${g.warning_percent}%` }} />
          <div className="usage-mark critical" style={{ left: `${g.critical_percent}%` }} />
        </div>
      )}
      <div className="stats">
        <Stat
          label="used"
          value={used === null ? "—" : `${fmtNumber(used, 1)} %`}
          hint={g.disk ? `${fmtBytes(g.disk.used_bytes)} of ${fmtBytes(g.disk.total_bytes)}` : undefined}
        />
        <Stat label="free for HomeIQ" value={fmtBytes(g.disk?.available_bytes)} />
        <Stat label="HomeIQ's share" value={fmtBytes(g.homeiq_bytes)} hint={`growth ${fmtGrowth(g.homeiq_growth_bytes_per_day)}`} />
        <Stat label="disk growth" value={fmtGrowth(g.growth_bytes_per_day)} hint="all users of the disk" />
        <Stat label="until full" value={full.text} hint={full.hint} />
      </div>
      <p className="muted small">
        <span className="mono wrap">{g.data_dir}</span> · warning at {g.warning_percent} %, critical at {g.critical_percent} % · measured {fmtTime(g.checked_at)}
      </p>
    </Card>
  );
}

function StoresCard({ g }: { g: StorageGuard }) {
  return (
    <Card title="HomeIQ's stores">
      {g.stores.length === 0 ? (
        <Empty>No store in the data directory yet.</Empty>
      ) : (
        <div className="table-scroll">
          <table className="table stores">
            <thead>
              <tr><th scope="col">Store</th><th scope="col">Path</th><th scope="col" className="num">Size</th></tr>
            </thead>
            <tbody>
              {g.stores.map((s) => (
                <tr key={s.path}>
                  <th scope="row">{storeName(s.store)}</th>
                  <td className="mono wrap">{s.path}</td>
                  <td className="num">{fmtBytes(s.bytes)}</td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr><th scope="row">Total</th><td /><td className="num">{fmtBytes(g.homeiq_bytes)}</td></tr>
            </tfoot>
          </table>
        </div>
      )}
    </Card>
  );
}

/** One row per tier, one column per field any tier has: new tiers and fields show as they come. */
function TiersCard({ tiers }: { tiers: StorageView["tiers"] }) {
  if (tiers.length === 0) return null;
  const columns = tierColumns(tiers);
  return (
    <Card title="Tiers" className="tiers-card">
      <div className="table-scroll">
        <table className="table tiers">
          <thead>
            <tr>
              <th scope="col">Tier</th>
              {columns.map((c) => <th scope="col" key={c}>{humanKey(c)}</th>)}
            </tr>
          </thead>
          <tbody>
            {tiers.map((t) => (
              <tr key={t.tier} data-tier={t.tier}>
                <th scope="row">{tierName(t.tier)}</th>
                {columns.map((c) => (
                  <td key={c} className={c === "setting" ? "mono" : undefined}>{fmtTierValue(c, (t as Record<string, unknown>)[c])}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function lastRunText(r: NonNullable<RetentionStatus["last_run"]>): string {
  switch (r.outcome) {
    case "done":
      return `Done: ${fmtNumber(r.points_deleted + r.shards_dropped)} ${r.shards_dropped > 0 ? "shards dropped" : "points deleted"}, ${fmtNumber(r.pages_freed)} pages freed, in ${fmtNumber(r.duration_ms)} ms`;
    case "nothing_rolled_up":
      return "Nothing deleted: no rollup exists yet";
    case "keep_forever":
      return "Nothing deleted: raw points are kept forever";
    case "failed":
      return `Failed: ${r.message} (retried at the next run)`;
  }
}

function conversionText(c: RetentionStatus["conversion"]): string | null {
  if (!c) return null;
  switch (c.state) {
    case "incremental":
      return "Freed space goes back to the disk";
    case "converted":
      return `Converted to return freed space (took ${fmtNumber(c.took_ms)} ms)`;
    case "no_room":
      return `Waiting for room: needs ${fmtBytes(c.needed_bytes)}, ${fmtBytes(c.available_bytes)} free in ${c.dir} (retried at the next run)`;
  }
}

function RetentionCard({ r }: { r: RetentionStatus }) {
  const conversion = conversionText(r.conversion);
  return (
    <Card title="Retention">
      <dl className="facts">
        <dt>Raw points kept</dt>
        <dd>
          {fmtDays(r.raw_days_in_effect)}
          {r.shortened && <strong> (shortened by the storage guard from {fmtDays(r.raw_days)})</strong>}
        </dd>
        <dt>Rolled up until</dt><dd>{fmtTime(r.rolled_up_until)}</dd>
        <dt>Last run</dt>
        <dd className={r.last_run?.outcome === "failed" ? "error-text" : undefined}>
          {r.last_run ? `${fmtTime(r.last_run.started_at)}: ${lastRunText(r.last_run)}` : "None yet"}
        </dd>
        <dt>Next run</dt><dd>{fmtTime(r.next_run_at)}</dd>
        {conversion && (<><dt>Embedded file</dt><dd>{conversion}</dd></>)}
        <dt>Since start</dt>
        <dd>
          {fmtNumber(r.counts.runs)} runs, {fmtNumber(r.counts.failures)} failed, {fmtNumber(r.counts.points_deleted)} points deleted
          {r.counts.shards_dropped > 0 && `, ${fmtNumber(r.counts.shards_dropped)} shards dropped`}
        </dd>
      </dl>
    </Card>
  );
}

/** The import's status, polled with backoff while one runs; stops when idle or unmounted. */
function useImportStatus() {
  const [status, setStatus] = useState<ImportStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [kick, setKick] = useState(0);
  useEffect(() => {
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let delay: number | null = null;
    const look = async () => {
      try {
        const s = await api.importStatus(ctl.signal);
        if (ctl.signal.aborted) return;
        setStatus(s);
        setError(null);
        if (s.running) {
          delay = nextPollDelay(delay);
          timer = setTimeout(() => void look(), delay);
        }
      } catch (e) {
        if (!ctl.signal.aborted) setError(message(e));
      }
    };
    void look();
    return () => {
      ctl.abort();
      clearTimeout(timer);
    };
  }, [kick]);
  return { status, error, setStatus, refresh: useCallback(() => setKick((k) => k + 1), []) };
}

export function ImportCard({ onFinished }: { onFinished?: () => void }) {
  const { status, error, setStatus, refresh } = useImportStatus();
  const [confirming, setConfirming] = useState(false);
  const [starting, setStarting] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const problemId = useId();
  const wasRunning = useRef(false);
  const finished = useRef(onFinished);
  finished.current = onFinished;
  useEffect(() => {
    if (wasRunning.current && status && !status.running) finished.current?.();
    wasRunning.current = status?.running ?? false;
  }, [status]);

  const start = async () => {
    setConfirming(false);
    setStarting(true);
    setProblem(null);
    try {
      setStatus(await api.startImport());
    } catch (e) {
      setProblem(e instanceof ApiError && e.status === 409 ? "An import is already under way: its progress shows here." : `Could not start the import: ${message(e)}`);
    } finally {
      setStarting(false);
      refresh();
    }
  };

  const run = status?.run ?? null;
  const progress = run ? importProgress(run) : null;
  const running = status?.running ?? false;
  return (
    <Card title="Import from Home Assistant" className="import-card">
      <p className="muted small">
        Reads what Home Assistant's recorder already holds (its recent states, then years of hourly long-term statistics) into HomeIQ's history, without
        duplicating what HomeIQ recorded itself. A failed or interrupted import resumes where it stopped.
      </p>
      {error && !status && <ErrorBox error={error} onRetry={refresh} />}
      {!status && !error && <Loading />}
      {status && (
        <>
          {run ? (
            <div className="import-run" data-testid="import-run" data-status={run.status}>
              <p role="status">
                <span className={`tag import-${run.status}`}>{importStatusText(run.status)}</span> {progress?.phase}
                {progress && progress.total > 0 && ` · ${fmtNumber(progress.done)} of ${fmtNumber(progress.total)} entities and statistic ids done`}
              </p>
              {running && (
                <progress max={100} value={progress?.percent ?? undefined} aria-label="Import progress">
                  {progress?.percent ?? 0} %
                </progress>
              )}
              <dl className="facts">
                <dt>Started</dt><dd>{fmtTime(run.started_at)} ({run.trigger === "first_start" ? "on first start" : "on demand"})</dd>
                {run.finished_at && (<><dt>Ended</dt><dd>{fmtTime(run.finished_at)}</dd></>)}
                <dt>States</dt>
                <dd>{fmtNumber(run.states.done)} of {fmtNumber(run.states.total)} entities · {fmtNumber(run.states.imported)} imported, {fmtNumber(run.states.skipped)} skipped</dd>
                <dt>Statistics</dt>
                <dd>{fmtNumber(run.statistics.done)} of {fmtNumber(run.statistics.total)} ids · {fmtNumber(run.statistics.imported)} hourly rows imported, {fmtNumber(run.statistics.skipped)} left out</dd>
              </dl>
              {run.error && (
                <p className="error-text import-error" role="alert">
                  {run.status === "interrupted" ? "Stopped" : "Failed"}: {run.error}
                </p>
              )}
            </div>
          ) : (
            <Empty>No import yet.{status.on_first_start ? " One runs on HomeIQ's first start." : ""}</Empty>
          )}
          <div className="form-actions">
            <button
              type="button"
              className="btn btn-primary"
              disabled={running || starting}
              aria-describedby={problem ? problemId : undefined}
              onClick={() => setConfirming(true)}
            >
              {running ? "Importing…" : run && run.status !== "succeeded" ? "Resume import" : "Import now"}
            </button>
            <span className="muted small">
              {fmtNumber(status.requests_per_second)} requests a second at most, so Home Assistant stays responsive
            </span>
          </div>
          {problem && (
            <p className="field-error" id={problemId} role="alert">
              {problem}
            </p>
          )}
          {error && <p className="muted small">Could not refresh the status: {error}</p>}
        </>
      )}
      {confirming && (
        <ConfirmDialog
          title="Import from Home Assistant?"
          onCancel={() => setConfirming(false)}
          actions={
            <button type="button" className="btn btn-primary" onClick={() => void start()}>
              Import
            </button>
          }
        >
          <p>
            HomeIQ will read Home Assistant's recorder history and long-term statistics. It takes a while on a large home and uses some disk space; Home
            Assistant is asked at most {fmtNumber(status?.requests_per_second)} times a second.
          </p>
        </ConfirmDialog>
      )}
    </Card>
  );
}

export default function Storage() {
  const storage = useApi("storage", api.storage);
  const s = storage.data;
  return (
    <div className="page page-storage">
      <h1>Storage</h1>
      {storage.error && <ErrorBox error={storage.error} onRetry={storage.reload} />}
      {storage.loading && !s && <Loading />}
      {s && (
        <>
          <LevelBanner g={s.guard} />
          <div className="grid">
            <DiskCard g={s.guard} />
            <StoresCard g={s.guard} />
          </div>
          <TiersCard tiers={s.tiers} />
          <RetentionCard r={s.retention} />
        </>
      )}
      <ImportCard onFinished={storage.reload} />
    </div>
  );
}
