import { useMemo } from "react";
import { api } from "../api";
import { Card, ErrorBox, Loading } from "../components/States";
import { useApi } from "../hooks";
import { useStore, type ThemeMode } from "../store";

/** Dotted keys and display values of nested settings. */
export function flatten(value: unknown, prefix = ""): [string, string][] {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  }
  const shown = value === null || value === undefined ? "—" : typeof value === "string" ? (value === "" ? "—" : value) : JSON.stringify(value);
  return [[prefix, shown]];
}

export default function Settings() {
  const config = useApi("config", api.config);
  const health = useApi("health", api.health);
  const version = health.data?.version ?? null;
  const theme = useStore((s) => s.theme);
  const setTheme = useStore((s) => s.setTheme);
  const rows = useMemo(() => (config.data ? flatten(config.data.settings) : []), [config.data]);
  return (
    <div className="page">
      <h1>Settings</h1>
      <Card title="Appearance">
        <fieldset className="radios">
          <legend>Theme</legend>
          {(["system", "light", "dark"] as ThemeMode[]).map((m) => (
            <label key={m}>
              <input type="radio" name="theme" value={m} checked={theme === m} onChange={() => setTheme(m)} /> {m === "system" ? "Follow the system" : m === "light" ? "Light" : "Dark"}
            </label>
          ))}
        </fieldset>
      </Card>
      <Card title="About">
        <dl className="facts">
          <dt>Version</dt><dd>{version ?? (health.loading ? "…" : "unknown")}</dd>
          <dt>Documentation</dt>
          <dd>
            <a href="https://github.com/homeiq/homeiq#readme" target="_blank" rel="noreferrer">README and configuration</a>
            {" · "}
            <a href="https://github.com/homeiq/homeiq/blob/main/DOCS.md" target="_blank" rel="noreferrer">Add-on documentation</a>
            {" · "}
            <a href="api/docs/" target="_blank" rel="noreferrer">API reference (this HomeIQ)</a>
          </dd>
        </dl>
      </Card>
      <Card title="Effective configuration">
        <p className="muted small">Read-only. Secrets are shown as ***. Change options in the add-on's Configuration tab (or the config file / HOMEIQ_… environment outside the add-on).</p>
        {config.error && <ErrorBox error={config.error} onRetry={config.reload} />}
        {config.loading && !config.data && <Loading />}
        {config.data && (
          <table className="table config">
            <thead>
              <tr><th scope="col">Setting</th><th scope="col">Value</th><th scope="col">Source</th></tr>
            </thead>
            <tbody>
              {rows.map(([k, v]) => (
                <tr key={k}>
                  <td className="mono">{k}</td>
                  <td className="mono wrap">{v}</td>
                  <td className={config.data!.sources[k] && config.data!.sources[k] !== "default" ? "" : "muted"}>{config.data!.sources[k] ?? "default"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  );
}
