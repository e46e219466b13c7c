//! The command line and configuration as a user meets them: the real binary, no services needed.

use std::process::Command;

fn homeiq(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeiq"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOMEIQ_OPTIONS_FILE", dir.path().join("options.json"))
        .env("HOMEIQ_DATA_DIR", dir.path().join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run homeiq")
}

/// `check-config` refuses an invalid value with exit code 2 (`serve` reports it in `/health`
/// instead: tests/config_error.rs).
#[test]
fn an_invalid_value_fails_check_config_naming_the_key() {
    for (var, value, key) in [
        ("HOMEIQ_INFLUXDB__SCHEMA", "grafana", "influxdb.schema"),
        ("HOMEIQ_HTTP__PORT", "not-a-port", "http.port"),
        ("HOMEIQ_INFLUXDB__URL", "localhost:8086", "influxdb.url"),
        ("HOMEIQ_SPOOL__MAX_BYTES", "10", "spool.max_bytes"),
    ] {
        let out = homeiq(&[(var, value)], &["check-config"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(key),
            "{var}={value} must name {key}: {stderr}"
        );
    }
}

#[test]
fn check_config_prints_layers_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = dir.path().join("options.json");
    std::fs::write(
        &options,
        r#"{"influxdb": {"database": "from_options", "password": "opt-secret-pw"}, "http": {"port": 9000}}"#,
    )
    .expect("write options");
    let out = homeiq(
        &[
            ("HOMEIQ_HA__TOKEN", "env-secret-token"),
            ("HOMEIQ_HTTP__PORT", "9100"),
            ("HOMEIQ_OPTIONS_FILE", options.to_str().expect("utf-8 path")),
        ],
        &["check-config"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(config["influxdb"]["database"], "from_options");
    assert_eq!(
        config["http"]["port"], 9100,
        "environment wins over options"
    );
    assert_eq!(config["ha"]["token"], "***");
    assert_eq!(config["influxdb"]["password"], "***");
    assert!(!stdout.contains("env-secret-token") && !stdout.contains("opt-secret-pw"));
}

#[test]
fn unknown_keys_are_warned_about_not_fatal() {
    let out = homeiq(&[("HOMEIQ_NOT_A_SETTING", "x")], &["check-config"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not_a_setting"), "{stderr}");
}
