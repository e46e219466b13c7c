import { lazy, Suspense, useEffect } from "react";
import { Link, Route, Router, Switch, useRoute } from "wouter";
import { Loading } from "./components/States";
import { useStore, type ThemeMode } from "./store";

const Overview = lazy(() => import("./pages/Overview"));
const Devices = lazy(() => import("./pages/Devices"));
const DevicePage = lazy(() => import("./pages/Device"));
const EntityPage = lazy(() => import("./pages/Entity"));
const Live = lazy(() => import("./pages/Live"));
const Settings = lazy(() => import("./pages/Settings"));
const Webhooks = lazy(() => import("./pages/Webhooks"));
const Patterns = lazy(() => import("./pages/Patterns"));
const Suggestions = lazy(() => import("./pages/Suggestions"));
const Storage = lazy(() => import("./pages/Storage"));

/** The router's base: the path of <base href> (the ingress prefix), without its trailing slash. */
export function routerBase(): string {
  return new URL(document.baseURI).pathname.replace(/\/+$/, "");
}

function NavLink({ href, label, match }: { href: string; label: string; match: string }) {
  const [active] = useRoute(match);
  // on a phone the navigation scrolls sideways: keep the current page's link in sight
  useEffect(() => {
    if (active) document.querySelector<HTMLElement>(".nav-link.active")?.scrollIntoView?.({ block: "nearest", inline: "nearest" });
  }, [active]);
  return (
    <Link href={href} className={`nav-link${active ? " active" : ""}`} aria-current={active ? "page" : undefined}>
      {label}
    </Link>
  );
}

function ThemePicker() {
  const theme = useStore((s) => s.theme);
  const setTheme = useStore((s) => s.setTheme);
  return (
    <label className="theme-picker">
      <span className="visually-hidden">Theme</span>
      <select aria-label="Theme" value={theme} onChange={(e) => setTheme(e.target.value as ThemeMode)}>
        <option value="system">System theme</option>
        <option value="light">Light</option>
        <option value="dark">Dark</option>
      </select>
    </label>
  );
}

function NotFound() {
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        This page does not exist. <Link href="/">Back to the overview</Link>.
      </p>
    </div>
  );
}

export function App() {
  return (
    <Router base={routerBase()}>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <img src="./favicon.svg" alt="" width="24" height="24" />
          <span>HomeIQ</span>
        </div>
        <nav aria-label="Main" className="nav">
          <NavLink href="/" label="Overview" match="/" />
          <NavLink href="/devices" label="Devices" match="/devices/*?" />
          <NavLink href="/live" label="Live events" match="/live" />
          <NavLink href="/patterns" label="Patterns" match="/patterns" />
          <NavLink href="/suggestions" label="Suggestions" match="/suggestions" />
          <NavLink href="/webhooks" label="Webhooks" match="/webhooks" />
          <NavLink href="/storage" label="Storage" match="/storage" />
          <NavLink href="/settings" label="Settings" match="/settings" />
        </nav>
        <ThemePicker />
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<Loading />}>
          <Switch>
            <Route path="/" component={Overview} />
            <Route path="/devices" component={Devices} />
            <Route path="/devices/:id">{(p) => <DevicePage id={decodeURIComponent(p.id)} />}</Route>
            <Route path="/entities/:id">{(p) => <EntityPage entityId={decodeURIComponent(p.id)} />}</Route>
            <Route path="/live" component={Live} />
            <Route path="/patterns" component={Patterns} />
            <Route path="/suggestions" component={Suggestions} />
            <Route path="/webhooks" component={Webhooks} />
            <Route path="/storage" component={Storage} />
            <Route path="/settings" component={Settings} />
            <Route component={NotFound} />
          </Switch>
        </Suspense>
      </main>
    </Router>
  );
}
