//! The command line: `homeiq [--config FILE] [--options FILE] [serve|check-config|simulate|demo]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{Application, StartupError};
use crate::config::{ConfigError, ConfigSources, DEFAULT_OPTIONS_FILE, FallbackSettings, Settings};
use crate::store::fault::StorageFault;
use crate::telemetry;

/// HomeIQ: durable history, live insight and automation for Home Assistant.
#[derive(Debug, Parser)]
#[command(name = "homeiq", version, about)]
pub struct Cli {
    /// Configuration file (TOML, YAML or JSON).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Add-on options file.
    #[arg(long, global = true, value_name = "FILE", env = "HOMEIQ_OPTIONS_FILE",
          default_value = DEFAULT_OPTIONS_FILE)]
    pub options: PathBuf,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to Home Assistant and record (the default).
    Serve,
    /// Validate the configuration and print it (secrets redacted) as JSON.
    CheckConfig,
    /// Run a simulated Home Assistant (WebSocket and REST API, generated home, routines or a
    /// load generator) to develop and test against.
    Simulate(crate::simulate::SimulatorOptions),
    /// Start a simulated home and HomeIQ recording it with embedded storage, in one process:
    /// no Home Assistant or InfluxDB needed. Prints the panel's URL.
    Demo(crate::demo::DemoOptions),
    /// Measure pattern detection against a simulated home's planted habits and automations:
    /// simulates `--days` per seed, records them with HomeIQ, analyses, prints recall and
    /// precision.
    Evaluate(crate::evaluate::EvaluateOptions),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    if let Some(Command::Simulate(options)) = cli.command {
        // the simulator needs none of HomeIQ's settings
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        telemetry::init(&level, crate::config::LogFormat::Text);
        return crate::simulate::run_cli(options).await;
    }
    if let Some(Command::Demo(options)) = cli.command {
        // self-contained: no configuration file, options or HOMEIQ_* variables are read
        return crate::demo::run(options).await;
    }
    if let Some(Command::Evaluate(options)) = cli.command {
        // self-contained like the demo; logs only warnings unless RUST_LOG says otherwise
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        telemetry::init(&level, crate::config::LogFormat::Text);
        return crate::evaluate::run(options).await;
    }
    // running as an add-on: the Supervisor gives every add-on a token
    let supervisor_token = std::env::var("SUPERVISOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let sources = ConfigSources {
        config_file: cli.config.clone(),
        options_file: Some(cli.options.clone()),
        supervisor: supervisor_token.is_some(),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let (settings, unknown) = match Settings::load(&sources) {
        Ok(loaded) => loaded,
        Err(invalid) if matches!(command, Command::Serve) => {
            telemetry::init(&invalid.fallback.log_level, invalid.fallback.log_format);
            return serve_config_error(&invalid.errors, &invalid.fallback).await;
        }
        Err(invalid) => {
            for e in &invalid.errors {
                eprintln!("homeiq: {e}");
            }
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log_level, settings.log_format);
    for key in &unknown {
        tracing::warn!(key = %key, "unknown configuration key ignored");
    }
    match command {
        Command::CheckConfig => match serde_json::to_string_pretty(&settings) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("homeiq: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => serve(settings, supervisor_token).await,
        Command::Simulate(_) | Command::Demo(_) | Command::Evaluate(_) => ExitCode::FAILURE,
    }
}

/// `serve` with an invalid configuration: logs every problem and answers `/health` with them
/// (see [`crate::api::cannot_start`]) until stopped; exit code 2 only if that server cannot start.
async fn serve_config_error(errors: &[ConfigError], fallback: &FallbackSettings) -> ExitCode {
    let served = crate::api::cannot_start::serve_until_stopped(
        errors,
        fallback,
        crate::app::wait_for_signal(),
    )
    .await;
    cannot_start_exit(served, fallback)
}

/// `serve` when a data file cannot be opened: as [`serve_config_error`], with the file, the
/// error and what to do.
async fn serve_storage_error(fault: StorageFault, fallback: &FallbackSettings) -> ExitCode {
    let served = crate::api::cannot_start::serve_storage_error(
        fault,
        fallback,
        crate::app::wait_for_signal(),
    )
    .await;
    cannot_start_exit(served, fallback)
}

fn cannot_start_exit(served: std::io::Result<()>, fallback: &FallbackSettings) -> ExitCode {
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                bind = %fallback.bind,
                port = fallback.port,
                error = %e,
                "cannot serve the reason HomeIQ cannot start"
            );
            ExitCode::from(2)
        }
    }
}

async fn serve(settings: Settings, supervisor_token: Option<String>) -> ExitCode {
    // outside the add-on, `ha.url` and `ha.token` are options like any other
    let fallback = FallbackSettings::new(&settings, supervisor_token.is_some());
    if let Err(e) = settings.ha_endpoint(supervisor_token.as_deref()) {
        return serve_config_error(&[e], &fallback).await;
    }
    let app = match Application::build(settings, supervisor_token).await {
        Ok(app) => app,
        Err(StartupError::Storage(fault)) => return serve_storage_error(fault, &fallback).await,
        Err(StartupError::Step { step, message }) => {
            tracing::error!(step, error = %message, "HomeIQ could not start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "HomeIQ stopped with an error");
            ExitCode::FAILURE
        }
    }
}
