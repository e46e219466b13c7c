//! The real [`Application`], in-process: embedded storage, the built-in simulator as Home
//! Assistant (as `homeiq demo` runs it), HTTP on a port of 127.0.0.1 the system picks and the
//! application reports. No Home Assistant, InfluxDB or binary is needed, and nothing is read from
//! a log.
//!
//! Settings come from `HOMEIQ_*` variables given to [`AppOptions::env`], parsed as the process's
//! environment would be (so `/api/v1/config` names them as sources); the process's own
//! environment is not read.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use homeiq::app::Application;
use homeiq::config::{ConfigSources, Settings, environment_of};
use homeiq::simulate::{self, SimulatorHandle, SimulatorOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Served, init_tls};

/// What to start.
pub struct AppOptions {
    env: Vec<(String, String)>,
    supervisor_token: Option<String>,
    simulator: SimulatorOptions,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            env: Vec::new(),
            supervisor_token: None,
            simulator: SimulatorOptions {
                seed: 7,
                ..SimulatorOptions::default()
            },
        }
    }
}

impl AppOptions {
    /// Sets a `HOMEIQ_*` variable (later ones win).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs as an add-on: `SUPERVISOR_TOKEN` is `token`.
    pub fn supervisor(mut self, token: &str) -> Self {
        self.supervisor_token = Some(token.to_owned());
        self
    }

    /// Starts the simulator and the application.
    pub async fn spawn(self) -> TestApp {
        init_tls();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,homeiq=info".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let simulator = simulate::spawn(self.simulator).expect("simulator");
        let mut vars: HashMap<String, String> = [
            ("HOMEIQ_DATA_DIR", data_dir.display().to_string()),
            ("HOMEIQ_STORAGE", "embedded".into()),
            ("HOMEIQ_HTTP__BIND", "127.0.0.1".into()),
            ("HOMEIQ_HA__URL", simulator.url.clone()),
            ("HOMEIQ_HA__TOKEN", simulator.token.clone()),
            // tests count what HomeIQ records; tests/import.rs turns the import on
            ("HOMEIQ_IMPORT__ON_FIRST_START", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(self.env);
        let sources = ConfigSources {
            config_file: None,
            options_file: Some(dir.path().join("no-options.json")),
            supervisor: self.supervisor_token.is_some(),
        };
        let (mut settings, unknown) = Settings::load_with_env(&sources, environment_of(vars))
            .unwrap_or_else(|e| panic!("invalid test settings: {:?}", e.errors));
        assert!(unknown.is_empty(), "unknown settings: {unknown:?}");
        // the system picks a free port; the application says which
        settings.http.port = 0;
        let app = Application::build(settings, self.supervisor_token)
            .await
            .unwrap_or_else(|e| panic!("the application did not start: {e}"));
        let port = app.port();
        let stop = app.shutdown_token();
        let run = tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            port,
            data_dir,
            dir,
            simulator: Some(simulator),
            stop,
            run: Some(run),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }
}

/// The application with default options.
pub async fn spawn_app() -> TestApp {
    AppOptions::default().spawn().await
}

/// A running in-process application; dropping it requests its shutdown.
pub struct TestApp {
    pub port: u16,
    pub data_dir: PathBuf,
    pub dir: tempfile::TempDir,
    /// The simulated Home Assistant it records.
    pub simulator: Option<SimulatorHandle>,
    stop: CancellationToken,
    run: Option<JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl TestApp {
    /// Shuts the application down as SIGTERM would, then the simulator; returns how long the
    /// application's shutdown took.
    pub async fn stop(mut self) -> Duration {
        let started = Instant::now();
        self.stop.cancel();
        if let Some(run) = self.run.take() {
            run.await.expect("run task").expect("run");
        }
        let took = started.elapsed();
        if let Some(simulator) = self.simulator.take() {
            simulator.shutdown().await;
        }
        took
    }
}

impl Served for TestApp {
    fn port(&self) -> u16 {
        self.port
    }

    fn client(&self) -> reqwest::Client {
        self.http.clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
