//! `homeiq simulate`: a simulated Home Assistant to develop, test and load HomeIQ against.
//!
//! It serves, on one port like Home Assistant (base URL `http://host:port`), the part of Home
//! Assistant's protocol HomeIQ uses, for a generated home that is the same for a given `--seed`.
//!
//! # Simulated
//! - WebSocket `/api/websocket`: `auth_required` → `auth` → `auth_ok` / `auth_invalid` (then the
//!   socket closes); strictly increasing ids (`id_reuse` otherwise); `supported_features` with
//!   `coalesce_messages` (then frames are JSON arrays whenever several messages are waiting);
//!   `subscribe_events` (any event type, or all), `unsubscribe_events`, `ping`, `get_states`,
//!   `get_config`, `config/{floor,area,label,device,entity}_registry/list`,
//!   `config/entity_registry/get`, `history/history_during_period` (compressed format and its
//!   `include_start_time_state`/`significant_changes_only`/`minimal_response`/`no_attributes`
//!   flags), `call_service` (`light`, `switch`, `automation` and `homeassistant`
//!   `turn_on`/`turn_off`/`toggle`; an `off` automation does not run),
//!   `config/area_registry/{create,update,delete}`, `config/device_registry/update`,
//!   `config/entity_registry/update` (renames through `new_entity_id`) and
//!   `config/entity_registry/remove` (the entity's state goes too), `validate_config` (HA's
//!   first checks with its wording: [`validate`]), each registry command firing the
//!   `*_registry_updated` events Home Assistant fires (`changes` holds old values,
//!   `old_entity_id` on renames); anything else answers `unknown_command`. Registry rows have
//!   the shape of the release chosen with `--ha-version` ([`HaVersion`]).
//! - REST with `Authorization: Bearer`: `GET /api/`, `GET /api/config`, `GET /api/states`,
//!   `GET|POST|DELETE /api/states/<entity_id>`, `POST /api/services/<domain>/<service>`,
//!   `/api/webhook/<id>` (no auth, always 200, recorded, runs automations with a matching webhook
//!   trigger), `GET|POST|DELETE /api/config/automation/config/<id>` (stored with an
//!   `automation.*` entity), `GET /api/history/period[/<start>]`. Simulator extras:
//!   `GET /api/simulator/status` (counts; how far the routine has run), `GET
//!   /api/simulator/webhook_calls`, `GET /api/simulator/routines` (the planted truth, below).
//! - `config/auth/list` as Home Assistant 2025.4 answers it: the owner (the token's user, also
//!   the first `person`), the other people, and the system-generated Supervisor, Home Assistant
//!   Content and Node-RED users.
//! - Contexts as Home Assistant sets them, on the state and its `state_changed` event alike: a
//!   device's report has neither user nor parent; a person's action (REST, WebSocket, a planted
//!   habit) has their `user_id`; an automation's run gets a new context — its parent the
//!   triggering state's context for a state trigger, none for time and webhook triggers — in which
//!   the automation's `last_triggered` is written, `automation_triggered` (`name`, `entity_id`,
//!   `source`: `state of <entity>`, `time`, `webhook`) is fired, and then its actions' changes
//!   are made.
//! - States like `hass.states.async_set`: `last_changed` moves only when the state string changes,
//!   `last_updated` with any change, `last_reported` on every write; contexts are ULIDs; an
//!   unchanged write fires nothing. The recorder keeps a bounded ring per entity.
//! - Daily routines on a simulated clock ([`routine`]) in the home's local time zone
//!   (`--time-zone`), or, with `--rate`, a load generator ([`load`]). The routine acts out a
//!   planted ground truth for pattern detection ([`truth`]): people's time-of-day habits and
//!   sequences, automations run as Home Assistant runs them (per area motion → lights, state
//!   triggered; a coffee plug and outdoor lights, time triggered), the owner's "Movie time"
//!   script on some evenings (in the owner's context, announced by `script_started`), and the
//!   Node-RED add-on's system user switching a plug; `GET /api/simulator/routines` and
//!   [`SimulatorHandle::routines`] list it with the routine's documented regularities.
//! - A backdated clock (`--backdate` hours, `--speed`) has the routine simulate every minute of
//!   the past (an hour per hold of the lock until it has caught up): 30 days of a small home take
//!   about half a minute.
//! - Slow clients are disconnected once more than `max_pending` events wait for them (Home
//!   Assistant: 4096 messages).
//!
//! # Not simulated
//! Templates, conditions and triggers other than webhooks in automations (conditions are not
//! evaluated), `subscribe_entities`, `subscribe_trigger`, `render_template`, `fire_event`,
//! `webhook/handle` over WebSocket, the Supervisor, config entries,
//! `state_reported` events, recorder persistence (a restart forgets history), registry creation
//! of devices and entities, removal of devices, scripts other than the planted one, the planted
//! automations' and script's entity registry rows, and `logbook/get_events`. The planted truth follows
//! entities by id: renaming one of its entities leaves that part of the plan acting on nothing.
//!
//! # Time
//! With `--speed X` (simulated seconds per real second) the simulated clock starts `--backdate`
//! before now (default: one day when X > 1) and runs X times faster until it reaches the wall
//! clock, then follows it: like Home Assistant, the simulator never stamps a state in the future,
//! and an accelerated day ends at "now" so history queries and backfills see a full past. The
//! load generator (`--rate`) always runs on the wall clock.

pub(crate) mod history;
pub(crate) mod home;
pub(crate) mod hub;
pub(crate) mod load;
pub(crate) mod render;
pub(crate) mod rest;
pub(crate) mod routine;
pub mod truth;
pub(crate) mod validate;
pub(crate) mod ws;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

pub use home::Profile;
pub(crate) use hub::Hub;
pub use truth::Routines;

/// The Home Assistant release whose message shapes the simulator speaks (`--ha-version`).
///
/// The home is the same in both (same entities, devices, states and friendly names); what
/// differs is how the registries describe it, as checked against the real releases:
/// - **2025.4** (CI's real Home Assistant): entity rows carry `has_entity_name`; entities named the
///   legacy way (`has_entity_name: false`) carry their whole name in `original_name`, device name
///   included; child devices are ordinary device rows pointing at their hub (`via_device_id`).
/// - **2026.11**: entity rows no longer carry `has_entity_name` and add `next_name_part`;
///   `original_name` no longer starts with the device's name; device rows add `config_entry_id`,
///   `config_subentry_id` and `parent_device_id`, and child devices come as a reduced row (no
///   manufacturer, model, connections or config entries) named without their parent's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HaVersion {
    /// Home Assistant 2025.4.
    #[default]
    #[value(name = "2025.4")]
    V2025_4,
    /// Home Assistant 2026.11.
    #[value(name = "2026.11")]
    V2026_11,
}

impl HaVersion {
    /// The version string the simulator reports (`auth_required`, `get_config`).
    pub(crate) fn version(self) -> &'static str {
        match self {
            HaVersion::V2025_4 => "2025.4.4",
            HaVersion::V2026_11 => "2026.11.0",
        }
    }
}

/// Default access token.
pub(crate) const DEFAULT_TOKEN: &str = "simulator-token";
/// Home Assistant's limit of pending messages per client.
pub(crate) const HA_MAX_PENDING: usize = 4_096;

/// Options of `homeiq simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulatorOptions {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8123)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Size of the generated home (small ≈ 100, medium ≈ 500, large ≈ 2,000 entities).
    #[arg(long, value_enum, default_value_t = Profile::Small)]
    pub profile: Profile,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Load-generator mode: exactly this many state changes per second in total (no routines).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seed of the generated home, its routines and the load sequence.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Access token clients must present.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// How far in the past the simulated clock starts, in hours (default: 24 when speed > 1,
    /// else 0).
    #[arg(long, value_name = "HOURS")]
    pub backdate: Option<f64>,
    /// Pending events at which a client is disconnected (default 4096 as Home Assistant; with
    /// `--rate`, at least a quarter second of the load).
    #[arg(long)]
    pub max_pending: Option<usize>,
    /// Seconds between rate reports in load-generator mode.
    #[arg(long, default_value_t = 5.0)]
    pub report_secs: f64,
    /// The home's time zone (an IANA name such as `Europe/Amsterdam`): `get_config` reports it
    /// and daily routines (waking, leaving, lights at dusk) follow its local time, across
    /// daylight-saving changes.
    #[arg(long, default_value = "UTC", value_parser = parse_time_zone)]
    pub time_zone: chrono_tz::Tz,
    /// Home Assistant release whose registry shapes to speak.
    #[arg(long, value_enum, default_value_t = HaVersion::V2025_4)]
    pub ha_version: HaVersion,
    /// Sensors (temperature, humidity, light level, power, energy, thermostats' readings) keep
    /// their first value instead of reporting on their schedules: the home's routines, doors,
    /// presence, lights, media, plugs and automations stay as they are, with about a fiftieth of
    /// the events (`homeiq evaluate` uses it to record a month quickly).
    #[arg(long)]
    pub quiet_sensors: bool,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            port: 0,
            bind: "127.0.0.1".into(),
            profile: Profile::Small,
            speed: 1.0,
            rate: None,
            seed: 1,
            token: DEFAULT_TOKEN.into(),
            backdate: None,
            max_pending: None,
            report_secs: 5.0,
            ha_version: HaVersion::V2025_4,
            time_zone: chrono_tz::Tz::UTC,
            quiet_sensors: false,
        }
    }
}

/// An IANA time zone name, or an error naming the problem.
pub(crate) fn parse_time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse()
        .map_err(|_| format!("`{name}` is not an IANA time zone name (like `Europe/Amsterdam`)"))
}

/// The simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// An option is out of range.
    #[error("invalid option: {0}")]
    Invalid(String),
    /// The port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address and port.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running simulator.
pub struct SimulatorHandle {
    /// The port it listens on.
    pub port: u16,
    /// Its base URL (`http://host:port`).
    pub url: String,
    /// The access token.
    pub token: String,
    /// The core, for in-process inspection.
    pub(crate) hub: Arc<Hub>,
    /// Load-generator counters (zero without `--rate`).
    pub load: Arc<load::LoadStats>,
    server: actix_web::dev::ServerHandle,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimulatorHandle {
    /// What the simulated home's routine plants (as `GET /api/simulator/routines` answers): the
    /// ground truth pattern detection is measured against.
    pub fn routines(&self) -> Routines {
        self.hub.routines()
    }

    /// Stops serving and the background tasks, and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.server.stop(false).await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts a simulator on the current tokio runtime.
pub fn spawn(options: SimulatorOptions) -> Result<SimulatorHandle, SimulateError> {
    if !(options.speed.is_finite() && options.speed > 0.0 && options.speed <= 1e6) {
        return Err(SimulateError::Invalid(format!(
            "--speed must be in (0, 1000000], not {}",
            options.speed
        )));
    }
    if options.rate == Some(0) {
        return Err(SimulateError::Invalid("--rate must be at least 1".into()));
    }
    if options.token.is_empty() {
        return Err(SimulateError::Invalid("--token must not be empty".into()));
    }
    let backdate_hours = match (options.rate, options.backdate) {
        (Some(_), _) => 0.0,
        (None, Some(h)) if h.is_finite() && h >= 0.0 => h,
        (None, Some(h)) => {
            return Err(SimulateError::Invalid(format!(
                "--backdate must be ≥ 0 hours, not {h}"
            )));
        }
        (None, None) if options.speed > 1.0 => 24.0,
        (None, None) => 0.0,
    };
    let speed = if options.rate.is_some() {
        1.0
    } else {
        options.speed
    };
    let clock = hub::Clock::new(speed, (backdate_hours * 3_600e6) as i64);
    // the home as it is when the simulated time starts (the clock restarts when it is built)
    let home = home::generate(options.profile, options.seed, clock.start());
    let rate = options.rate.unwrap_or(0);
    let max_pending = options
        .max_pending
        .unwrap_or_else(|| HA_MAX_PENDING.max((rate / 4) as usize))
        .max(1);
    // batches the bus keeps: enough to hold about 1.5 × max_pending events of the load
    let per_batch = ((rate as f64 * load::TICK.as_secs_f64()) as usize).clamp(1, load::CHUNK);
    let bus_batches = if rate > 0 {
        (max_pending * 3 / 2 / per_batch + 8).clamp(16, 65_536)
    } else {
        4_096
    };
    let hub = Arc::new(
        Hub::new(
            home,
            clock,
            options.seed,
            options.token.clone(),
            max_pending,
            bus_batches,
        )
        .speaking(options.ha_version)
        .in_time_zone(options.time_zone),
    );
    let data = web::Data::new(hub.clone());
    let addr = format!("{}:{}", options.bind, options.port);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(4 << 20))
            .configure(rest::routes)
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .bind((options.bind.as_str(), options.port))
    .map_err(|source| SimulateError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let port = server
        .addrs()
        .first()
        .map(std::net::SocketAddr::port)
        .unwrap_or(options.port);
    let server = server.run();
    let server_handle = server.handle();
    let cancel = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "simulator HTTP server failed");
        }
    })];
    let stats = Arc::new(load::LoadStats::default());
    match options.rate {
        Some(rate) => tasks.push(tokio::spawn(load::run(
            hub.clone(),
            rate,
            options.seed,
            stats.clone(),
            Duration::from_secs_f64(options.report_secs.clamp(0.1, 3_600.0)),
            cancel.child_token(),
        ))),
        None => tasks.push(tokio::spawn(routine::run(
            hub.clone(),
            routine::Routine::new(options.seed).quiet_sensors(options.quiet_sensors),
            speed,
            cancel.child_token(),
        ))),
    }
    let host = if options.bind == "0.0.0.0" {
        "127.0.0.1"
    } else {
        options.bind.as_str()
    };
    Ok(SimulatorHandle {
        port,
        url: format!("http://{host}:{port}"),
        token: options.token,
        hub,
        load: stats,
        server: server_handle,
        cancel,
        tasks,
    })
}

/// Runs `homeiq simulate` until SIGINT/SIGTERM; prints the URL, port and token first.
pub(crate) async fn run_cli(options: SimulatorOptions) -> std::process::ExitCode {
    let profile = options.profile;
    let seed = options.seed;
    let rate = options.rate;
    let ha_version = options.ha_version;
    let handle = match spawn(options) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("homeiq simulate: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let entities = handle.hub.with(|i| i.home.states.len()).0;
    println!(
        "HomeIQ simulator: Home Assistant {} at {} (WebSocket {}/api/websocket)",
        ha_version.version(),
        handle.url,
        handle.url.replacen("http", "ws", 1)
    );
    println!("token: {}", handle.token);
    println!(
        "home: {profile:?} profile, seed {seed}, {entities} entities{}",
        rate.map(|r| format!(", load generator at {r} changes/s"))
            .unwrap_or_default()
    );
    println!("port: {}", handle.port);
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("stopping the simulator");
    handle.shutdown().await;
    let _ = std::io::stdout().flush();
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
