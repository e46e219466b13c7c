//! The command line: `homeiq [--config FILE] [--options FILE] [serve|check-config|simulate|demo]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{ConfigSources, DEFAULT_OPTIONS_FILE, Settings};
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
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    let sources = ConfigSources {
        config_file: cli.config.clone(),
        options_file: Some(cli.options.clone()),
    };
    let (settings, unknown) = match Settings::load(&sources) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("homeiq: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log_level, settings.log_format);
    for key in &unknown {
        tracing::warn!(key = %key, "unknown configuration key ignored");
    }
    match cli.command.unwrap_or(Command::Serve) {
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
        Command::Serve => serve(settings).await,
        Command::Simulate(_) | Command::Demo(_) => ExitCode::FAILURE,
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let supervisor_token = std::env::var("SUPERVISOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let app = match Application::build(settings, supervisor_token).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(step = e.step, error = %e.message, "HomeIQ could not start");
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
