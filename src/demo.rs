//! `homeiq demo`: a simulated home recorded by HomeIQ in embedded mode, in one process, with no
//! Home Assistant and no InfluxDB on the machine.
//!
//! The simulator ([`crate::simulate`]) listens on a free port of 127.0.0.1 with its clock started
//! `--backdate` hours in the past and running `--speed` times faster than the wall clock until it
//! reaches now (by default an hour at 60×: within the first real minute a simulated hour of
//! routines is recorded, stamped in the past like Home Assistant's own history; after that the
//! home lives on the wall clock). HomeIQ connects to it as to a real Home Assistant, mirrors
//! its registries, and records every state change in `<data-dir>/history.db`. Ctrl-C (or SIGTERM)
//! stops HomeIQ first (flushing history), then the simulator. The data directory is kept, so a
//! second run continues the history.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::Application;
use crate::config::{Secret, Settings, StorageMode};
use crate::simulate::{self, Profile, SimulatorOptions};

/// Options of `homeiq demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoOptions {
    /// Port of HomeIQ's panel and API on 127.0.0.1.
    #[arg(long, default_value_t = 8099)]
    pub port: u16,
    /// Where HomeIQ keeps its databases (created if missing, kept afterwards).
    #[arg(long, value_name = "DIR", default_value = "./homeiq-demo")]
    pub data_dir: PathBuf,
    /// Size of the simulated home (small ≈ 100, medium ≈ 500, large ≈ 2,000 entities).
    #[arg(long, value_enum, default_value_t = Profile::Medium)]
    pub profile: Profile,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// How far in the past the simulated clock starts, in hours: at the default 60× speed the
    /// last hour is filled within a minute (`--backdate 24` fills a whole day in 24 minutes).
    #[arg(long, value_name = "HOURS", default_value_t = 1.0)]
    pub backdate: f64,
    /// Seed of the simulated home.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// HomeIQ's settings for the demo: embedded storage, the simulator as Home Assistant.
pub(crate) fn settings(options: &DemoOptions, ha_url: &str, token: &str) -> Settings {
    let mut s = Settings {
        data_dir: options.data_dir.clone(),
        log_level: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,homeiq=info".into()),
        storage: StorageMode::Embedded,
        ..Settings::default()
    };
    s.http.bind = "127.0.0.1".into();
    s.http.port = options.port;
    s.ha.url = Some(ha_url.to_owned());
    s.ha.token = Some(Secret::new(token.to_owned()));
    s
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub(crate) async fn run(options: DemoOptions) -> ExitCode {
    let simulator = match simulate::spawn(SimulatorOptions {
        port: 0,
        profile: options.profile,
        speed: options.speed,
        backdate: Some(options.backdate),
        seed: options.seed,
        ..SimulatorOptions::default()
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("homeiq demo: cannot start the simulated home: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = settings(&options, &simulator.url, &simulator.token);
    crate::telemetry::init(&settings.log_level, settings.log_format);
    let app = match Application::build(settings, None).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("homeiq demo: HomeIQ could not start: {e}");
            simulator.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let entities = simulator.hub.with(|i| i.home.states.len()).0;
    let base = format!("http://127.0.0.1:{}", app.port());
    println!();
    println!("HomeIQ demo is running: {base}/");
    println!();
    println!(
        "  simulated Home Assistant: {} ({:?} home, {entities} entities, {}x speed, starting {} h ago)",
        simulator.url, options.profile, options.speed, options.backdate
    );
    println!(
        "  history: {} (embedded storage, no InfluxDB)",
        crate::store::embedded::history_path(&options.data_dir).display()
    );
    println!();
    println!("  what to look at:");
    println!("    {base}/                      the panel");
    println!("    {base}/api/docs/             the API, try it out");
    println!("    {base}/api/v1/metrics/realtime  event rates, queues, counts");
    println!("    {base}/api/v1/devices        the mirrored device registry");
    println!("    {base}/api/v1/events/stats   events per minute by domain");
    println!("    {base}/api/v1/history?entity_id=<an entity>  its history");
    println!("    {base}/health/deep           every part's health");
    println!();
    println!("  Ctrl-C stops the demo; the data directory is kept.");
    let _ = std::io::stdout().flush();
    let result = app.run_until_stopped().await;
    simulator.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("homeiq demo: {e}");
            ExitCode::FAILURE
        }
    }
}
