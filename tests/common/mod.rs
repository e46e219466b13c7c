//! Shared test harness: the real `homeiq` binary ([`HomeIq`]) against the real Home Assistant and
//! InfluxDB that `.ci/run` starts (`HA_URL`, `HA_TOKEN`, `INFLUX_URL`; tests fail, never skip,
//! without them), and the real application in-process ([`app::spawn_app`]) with embedded storage
//! and the built-in simulator, which needs neither. Both are [`Served`].
#![allow(dead_code)]

pub mod app;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Installs the one rustls provider (as `main` does).
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A required environment variable.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through .ci/run, which starts Home Assistant and InfluxDB")
    })
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A port for a server a test starts, stops and starts again on the same port (InfluxDB also
/// binds the port two above it).
///
/// [`free_port`] hands out a port of the kernel's ephemeral range (32768–60999), from which every
/// client connection and port-0 listener of the parallel tests also draws: CI saw one taken
/// before `influxd` bound it. This one is drawn at random below that range, so only another test
/// drawing the same number could take it.
pub fn server_port() -> u16 {
    use std::hash::BuildHasher;
    loop {
        let draw = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
        let port = 20_000 + (draw % 12_000) as u16;
        if [port, port + 2]
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            return port;
        }
    }
}

/// A name unique to this process and call, for databases and entities.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it yields `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A HomeIQ under test, served over HTTP on 127.0.0.1: the binary ([`HomeIq`]) or the application
/// in-process ([`app::TestApp`]). Helpers take `&impl Served` and work with either.
pub trait Served {
    /// The HTTP port it listens on.
    fn port(&self) -> u16;

    /// An HTTP client for it (timeouts set).
    fn client(&self) -> reqwest::Client;

    /// A URL on its HTTP server.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// `GET /health/deep` (whatever its status code).
    fn deep(&self) -> impl Future<Output = Value> {
        self.get_json("/health/deep")
    }

    /// `GET path` as JSON (whatever its status code).
    fn get_json(&self, path: &str) -> impl Future<Output = Value> {
        let request = self.client().get(self.url(path));
        async move {
            request
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json")
        }
    }

    /// Waits until HomeIQ's current state of `entity_id` is `state`: every change before it was
    /// received.
    fn wait_state(&self, entity_id: &str, state: &str) -> impl Future<Output = ()> {
        let url = self.url(&format!("/api/v1/entities/{entity_id}"));
        let http = self.client();
        async move {
            eventually(
                &format!("{entity_id} received as {state}"),
                Duration::from_secs(45),
                || async {
                    let e: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    (e["state"]["state"] == state).then_some(())
                },
            )
            .await;
        }
    }

    /// Waits until `/health/deep` satisfies `check`.
    fn wait_deep(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> impl Future<Output = Value> {
        async move {
            eventually(what, timeout, || async {
                let d = self.deep().await;
                check(&d).then_some(d)
            })
            .await
        }
    }

    /// Waits until connected to HA with the registry mirror fully synced once.
    fn wait_synced(&self) -> impl Future<Output = Value> {
        self.wait_deep("connected and synced", Duration::from_secs(60), |d| {
            d["home_assistant"]["state"] == "connected"
                && d["registry"]["last_full_sync"]
                    .as_object()
                    .is_some_and(|m| m.len() == 5)
                && d["ingest"]["snapshots"].as_u64().unwrap_or(0) >= 1
        })
    }
}

/// Home Assistant as the tests reach it: REST and a raw WebSocket, independent of HomeIQ's client.
#[derive(Clone)]
pub struct Ha {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl Ha {
    /// The Home Assistant `.ci/run` started.
    pub fn from_env() -> Self {
        init_tls();
        Ha::new(&env("HA_URL"), &env("HA_TOKEN"))
    }

    /// A Home Assistant at `url` with `token`.
    pub fn new(url: &str, token: &str) -> Self {
        init_tls();
        Ha {
            url: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("{}/api/websocket", self.url.replacen("http", "ws", 1))
    }

    /// GET a REST path under `/api`.
    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/api/{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("HA GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// POST a REST path under `/api`.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/api/{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("HA POST");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// DELETE a REST path under `/api` (status not checked: used for clean-up).
    pub async fn delete(&self, path: &str) -> reqwest::StatusCode {
        self.http
            .delete(format!("{}/api/{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(reqwest::StatusCode::SERVICE_UNAVAILABLE)
    }

    /// Sets a state through `POST /api/states/<entity_id>` and returns HA's state object.
    pub async fn set_state(&self, entity_id: &str, state: &str, attributes: Value) -> Value {
        self.post(
            &format!("states/{entity_id}"),
            json!({"state": state, "attributes": attributes}),
        )
        .await
    }

    /// Calls a service.
    pub async fn call_service(&self, domain: &str, service: &str, data: Value) -> Value {
        self.post(&format!("services/{domain}/{service}"), data)
            .await
    }

    /// The current state of an entity.
    pub async fn state(&self, entity_id: &str) -> Value {
        self.get(&format!("states/{entity_id}")).await
    }

    /// Runs WebSocket commands on a fresh connection and returns their results in order.
    pub async fn ws(&self, commands: Vec<Value>) -> Vec<Value> {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .expect("HA websocket");
        let next_json = |m: Message| match m {
            Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).ok(),
            _ => None,
        };
        let mut auth_sent = false;
        while let Some(Ok(m)) = ws.next().await {
            let Some(v) = next_json(m) else { continue };
            match v["type"].as_str() {
                Some("auth_required") if !auth_sent => {
                    ws.send(Message::Text(
                        json!({"type":"auth","access_token": self.token})
                            .to_string()
                            .into(),
                    ))
                    .await
                    .expect("send auth");
                    auth_sent = true;
                }
                Some("auth_ok") => break,
                other => panic!("unexpected auth reply {other:?}: {v}"),
            }
        }
        let mut results = Vec::new();
        for (i, mut cmd) in commands.into_iter().enumerate() {
            let id = i as u64 + 1;
            cmd["id"] = json!(id);
            ws.send(Message::Text(cmd.to_string().into()))
                .await
                .expect("send command");
            loop {
                let m = ws.next().await.expect("reply").expect("frame");
                let Some(v) = next_json(m) else { continue };
                if v["id"] == json!(id) && v["type"] == "result" {
                    assert_eq!(v["success"], json!(true), "command {cmd} failed: {v}");
                    results.push(v["result"].clone());
                    break;
                }
            }
        }
        let _ = ws.close(None).await;
        results
    }

    /// One WebSocket command.
    pub async fn ws1(&self, command: Value) -> Value {
        self.ws(vec![command]).await.remove(0)
    }
}

/// InfluxDB as the tests reach it.
#[derive(Clone)]
pub struct Influx {
    pub url: String,
    http: reqwest::Client,
}

impl Influx {
    /// The InfluxDB `.ci/run` started.
    pub fn from_env() -> Self {
        init_tls();
        Influx {
            url: env("INFLUX_URL").trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Runs an InfluxQL query (epoch=ms) and returns the first statement's series.
    pub async fn query(&self, db: &str, q: &str) -> Vec<Value> {
        self.query_epoch(db, q, "ms").await
    }

    /// Runs an InfluxQL query with times in `epoch` (`ns`, `u`, `ms`, `s`).
    pub async fn query_epoch(&self, db: &str, q: &str, epoch: &str) -> Vec<Value> {
        let r: Value = self
            .http
            .post(format!("{}/query", self.url))
            .form(&[("db", db), ("q", q), ("epoch", epoch)])
            .send()
            .await
            .expect("influx query")
            .json()
            .await
            .expect("influx json");
        let statement = &r["results"][0];
        assert!(statement.get("error").is_none(), "query {q}: {r}");
        statement["series"].as_array().cloned().unwrap_or_default()
    }

    /// Whether a database exists (HomeIQ creates its own when InfluxDB first answers).
    pub async fn has_db(&self, db: &str) -> bool {
        self.query("", "SHOW DATABASES")
            .await
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .any(|v| v[0] == db)
    }

    /// Rows of a query as objects keyed by column (tags merged in), across all series.
    pub async fn rows(&self, db: &str, q: &str) -> Vec<serde_json::Map<String, Value>> {
        let mut out = Vec::new();
        for series in self.query(db, q).await {
            let columns: Vec<String> = series["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for values in series["values"].as_array().cloned().unwrap_or_default() {
                let mut row = serde_json::Map::new();
                row.insert("_measurement".into(), series["name"].clone());
                if let Some(tags) = series["tags"].as_object() {
                    for (k, v) in tags {
                        row.insert(k.clone(), v.clone());
                    }
                }
                for (c, v) in columns
                    .iter()
                    .zip(values.as_array().cloned().unwrap_or_default())
                {
                    row.insert(c.clone(), v);
                }
                out.push(row);
            }
        }
        out
    }

    /// The times (µs) of an entity's points in `measurement`, oldest first.
    pub async fn point_times(&self, db: &str, measurement: &str, entity_id: &str) -> Vec<i64> {
        self.query_epoch(
            db,
            &format!("SELECT * FROM \"{measurement}\" WHERE entity_id = '{entity_id}'"),
            "u",
        )
        .await
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v[0].as_i64())
        .collect()
    }

    /// Creates a database.
    pub async fn create_db(&self, db: &str) {
        self.query("", &format!("CREATE DATABASE \"{db}\"")).await;
    }
}

/// Options for a HomeIQ process under test.
#[derive(Clone)]
pub struct HomeIqOptions {
    pub ha_url: String,
    pub ha_token: String,
    pub influx_url: String,
    pub database: String,
    pub data_dir: Option<PathBuf>,
    pub extra_env: Vec<(String, String)>,
}

impl HomeIqOptions {
    /// Real HA and InfluxDB from the environment, a fresh database.
    pub fn from_env() -> Self {
        HomeIqOptions {
            ha_url: env("HA_URL"),
            ha_token: env("HA_TOKEN"),
            influx_url: env("INFLUX_URL"),
            database: unique("homeiq"),
            data_dir: None,
            extra_env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The real `homeiq` binary, running.
pub struct HomeIq {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub database: String,
    pub options: HomeIqOptions,
    http: reqwest::Client,
}

impl HomeIq {
    /// Starts the binary and waits for `/health`.
    pub async fn spawn(options: HomeIqOptions) -> Self {
        init_tls();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let mut me = HomeIq {
            child: None,
            port: 0,
            dir,
            data_dir,
            database: options.database.clone(),
            options,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        };
        me.start().await;
        me
    }

    /// (Re)starts the process with the same data dir and database.
    ///
    /// [`free_port`] only finds a port that was free a moment ago: another process can take it
    /// before HomeIQ binds it, and HomeIQ then exits (`bind HTTP server`). That is retried on
    /// another port; any other exit before `/health` answers fails at once with the log.
    pub async fn start(&mut self) {
        const ATTEMPTS: u32 = 5;
        'attempt: for attempt in 1..=ATTEMPTS {
            let log_from = self.log().len();
            self.port = free_port();
            self.child = Some(self.command().spawn().expect("spawn homeiq"));
            let url = self.url("/health");
            let timeout = Duration::from_secs(30);
            let deadline = Instant::now() + timeout;
            loop {
                let healthy = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let exited = self
                    .child
                    .as_mut()
                    .expect("spawned")
                    .try_wait()
                    .expect("try_wait");
                match exited {
                    None if healthy => return,
                    None => {}
                    Some(status) => {
                        self.child = None;
                        let log = self.log();
                        let new = log.get(log_from..).unwrap_or_default();
                        if new.contains("bind HTTP server") && attempt < ATTEMPTS {
                            continue 'attempt;
                        }
                        panic!("homeiq exited ({status}) before answering /health:\n{new}");
                    }
                }
                if Instant::now() > deadline {
                    panic!("timed out after {timeout:?} waiting for: homeiq /health");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The `homeiq serve` command line for the current port and options.
    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeiq"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOMEIQ_OPTIONS_FILE",
                self.dir.path().join("no-options.json"),
            )
            .env("HOMEIQ_DATA_DIR", &self.data_dir)
            .env("HOMEIQ_LOG_LEVEL", "info,homeiq=debug")
            .env("HOMEIQ_HTTP__BIND", "127.0.0.1")
            .env("HOMEIQ_HTTP__PORT", self.port.to_string())
            .env("HOMEIQ_HA__URL", &self.options.ha_url)
            // tests count what HomeIQ records; tests/import.rs turns the import on
            .env("HOMEIQ_IMPORT__ON_FIRST_START", "false")
            .env("HOMEIQ_HA__TOKEN", &self.options.ha_token)
            .env("HOMEIQ_INFLUXDB__URL", &self.options.influx_url)
            .env("HOMEIQ_INFLUXDB__DATABASE", &self.options.database)
            // the guard watches this machine's /tmp, which a parallel build fills; the guard's own
            // tests (tests/api.rs) set what they need
            .env("HOMEIQ_STORAGE_GUARD__WARNING_PERCENT", "98")
            .env("HOMEIQ_STORAGE_GUARD__CRITICAL_PERCENT", "99")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.options.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Where the process logs.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("homeiq.log")
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The SQLite mirror, opened through HomeIQ's own store.
    pub async fn registry(&self) -> homeiq::registry::RegistryStore {
        homeiq::registry::RegistryStore::open(&self.data_dir.join("homeiq.db"))
            .await
            .expect("open mirror")
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit and returns its exit code and how long that took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > timeout {
                panic!("homeiq did not exit within {timeout:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Served for HomeIq {
    fn port(&self) -> u16 {
        self.port
    }

    fn client(&self) -> reqwest::Client {
        self.http.clone()
    }
}

impl Drop for HomeIq {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- homeiq log ----\n{}", self.log());
        }
        self.kill();
    }
}

/// The shared folder with `start-ha` and `start-influxdb`.
pub fn shared_dir() -> PathBuf {
    std::env::var("HOMEIQ_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn run_script(script: &str, args: &[String]) -> String {
    let path = shared_dir().join(script);
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn env_file_value(file: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(file).expect("env file");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {}", file.display()))
        .to_owned()
}

/// A Home Assistant of one test's own, so stopping it disturbs no other test.
pub struct OwnHa {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnHa {
    /// Starts it (blocking: call from `spawn_blocking`).
    pub fn start() -> (Self, Ha) {
        let me = OwnHa {
            dir: tempfile::tempdir().expect("tempdir"),
            port: server_port(),
        };
        let ha = me.run_start();
        (me, ha)
    }

    /// (Re)starts it; the token survives restarts.
    pub fn run_start(&self) -> Ha {
        run_script(
            "ha/start-ha",
            &[self.dir.path().display().to_string(), self.port.to_string()],
        );
        let env = self.dir.path().join("ha.env");
        Ha::new(
            &env_file_value(&env, "HA_URL"),
            &env_file_value(&env, "HA_TOKEN"),
        )
    }

    /// Stops it.
    pub fn stop(&self) {
        let _ = Command::new(shared_dir().join("ha/stop-ha"))
            .arg(self.dir.path())
            .status();
    }
}

impl Drop for OwnHa {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An InfluxDB of one test's own, so stopping it disturbs no other test.
pub struct OwnInflux {
    dir: tempfile::TempDir,
    port: u16,
    /// Its base URL.
    pub url: String,
}

impl OwnInflux {
    /// Starts it (blocking).
    pub fn start() -> Self {
        let port = server_port();
        let me = OwnInflux {
            dir: tempfile::tempdir().expect("tempdir"),
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        me.run_start();
        me
    }

    /// (Re)starts it with the same files.
    pub fn run_start(&self) {
        run_script(
            "influxdb/start-influxdb",
            &[self.dir.path().display().to_string(), self.port.to_string()],
        );
    }

    /// Stops it.
    pub fn stop(&self) {
        let _ = Command::new(shared_dir().join("influxdb/stop-influxdb"))
            .arg(self.dir.path())
            .status();
    }

    /// A client for queries.
    pub fn client(&self) -> Influx {
        init_tls();
        Influx {
            url: self.url.clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for OwnInflux {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token `Sim` accepts.
pub const SIM_TOKEN: &str = "test-sim-token";

/// A running `homeiq simulate`.
pub struct Sim {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    output: Arc<Mutex<String>>,
}

impl Sim {
    /// Starts one on a free port.
    pub fn start(args: &[&str]) -> Self {
        let mut sim = Sim {
            child: None,
            port: 0,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            output: Arc::default(),
        };
        sim.run(0);
        sim
    }

    /// (Re)starts on `port` (0: a free one), retrying while the port is still taken.
    pub fn run(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(env!("CARGO_BIN_EXE_homeiq"))
                .arg("simulate")
                .args(["--port", &port.to_string(), "--token", SIM_TOKEN])
                .args(&self.args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn homeiq simulate");
            let stdout = child.stdout.take().expect("stdout");
            let stderr = child.stderr.take().expect("stderr");
            let (tx, rx) = std::sync::mpsc::channel();
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(p) = line.strip_prefix("port: ") {
                        let _ = tx.send(p.trim().parse::<u16>().ok());
                    }
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            });
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut o) = output.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(Some(p)) => {
                    self.port = p;
                    self.child = Some(child);
                    return;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    assert!(
                        Instant::now() < deadline,
                        "the simulator did not start: {}",
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ha(&self) -> Ha {
        Ha::new(&self.url(), SIM_TOKEN)
    }

    pub fn log(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- simulator output ----\n{}", self.log());
        }
        self.kill();
    }
}

/// Checks that `/api/v1/metrics/realtime` (`realtime`), `/health/deep` (`deep`) and `/metrics`
/// (`metrics`) speak of the history backend actually configured, `backend` (`influxdb` or
/// `embedded`), and of no other: a typed `storage` object, `homeiq_storage_*{backend}` metrics.
pub fn assert_storage_reported(realtime: &Value, deep: &Value, metrics: &str, backend: &str) {
    for (what, doc) in [("realtime", realtime), ("deep health", deep)] {
        let storage = &doc["storage"];
        assert_eq!(storage["backend"], backend, "{what}: {doc}");
        assert_eq!(storage["reachable"], true, "{what}: {doc}");
        assert!(storage["written"].is_u64(), "{what}: {doc}");
        // InfluxDB's own counters (spool, quarantine) only with InfluxDB
        assert_eq!(
            storage["influxdb"]["spool_points"].is_u64(),
            backend == "influxdb",
            "{what}: {doc}"
        );
        assert!(doc.get("influxdb_reachable").is_none(), "{what}: {doc}");
        assert!(
            doc.get("influxdb").is_none() && doc.get("embedded").is_none(),
            "{what}: {doc}"
        );
    }
    assert!(
        realtime["queues"].get("spool_points").is_none(),
        "{realtime}"
    );
    for name in [
        "homeiq_storage_reachable",
        "homeiq_storage_points_written_total",
        "homeiq_storage_queued_points",
        "homeiq_storage_write_duration_seconds_count",
    ] {
        let line = format!("{name}{{backend=\"{backend}\"}} ");
        assert!(metrics.contains(&line), "{line} missing in:\n{metrics}");
    }
    assert!(
        metrics.contains(&format!(
            "homeiq_storage_reachable{{backend=\"{backend}\"}} 1"
        )),
        "{metrics}"
    );
    assert_eq!(
        metrics.contains("homeiq_storage_spool_points{backend=\"influxdb\"}"),
        backend == "influxdb",
        "{metrics}"
    );
    for old in ["homeiq_influxdb_", "homeiq_spool_", "homeiq_quarantined_"] {
        assert!(!metrics.contains(old), "{old}* is gone:\n{metrics}");
    }
    if backend == "embedded" {
        assert!(!metrics.contains("influxdb"), "{metrics}");
    }
}
