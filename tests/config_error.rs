//! `homeiq serve` when it cannot start, as the add-on meets it: the real binary with an invalid
//! `options.json`, or with a damaged SQLite file in its data folder; no Home Assistant or InfluxDB
//! needed. HomeIQ must not exit (the Supervisor's watchdog would restart it in a loop) but log the
//! problem and report it, with what to do, in `/health` (`config_error`, `storage_error`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A `homeiq serve` started with only the given environment; its log goes to `dir/homeiq.log`.
struct Serve {
    child: Child,
    log: std::path::PathBuf,
}

impl Serve {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join("homeiq.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homeiq"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOMEIQ_OPTIONS_FILE", dir.join("options.json"))
            .env("HOMEIQ_DATA_DIR", dir.join("data"))
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Serve {
            child: cmd.spawn().expect("spawn homeiq"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `GET url` until it answers (any status), failing if the process exits first.
    async fn first_answer(&mut self, http: &reqwest::Client, url: &str) -> (u16, Value) {
        let child = &mut self.child;
        let log = &self.log;
        common::eventually(
            "the configuration-error server to answer",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "homeiq exited ({status}) instead of serving:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                async {
                    let r = http.get(url).send().await.ok()?;
                    let status = r.status().as_u16();
                    Some((status, r.json::<Value>().await.ok()?))
                }
            },
        )
        .await
    }

    /// SIGTERM, then the exit code (waits up to 10 s).
    fn stop(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "homeiq did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- homeiq log ----\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    common::init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

fn keys(health: &Value) -> Vec<String> {
    health["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn invalid_options_are_reported_in_health_and_the_log_without_exiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    // the address is read from the (otherwise invalid) options; two values out of range
    std::fs::write(
        dir.path().join("options.json"),
        format!(
            r#"{{"http": {{"port": {port}, "bind": "127.0.0.1"}},
                "influxdb": {{"batch_size": 0, "max_in_flight": 99}}}}"#
        ),
    )
    .expect("write options");
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HA__URL", "http://127.0.0.1:9"),
            ("HOMEIQ_HA__TOKEN", "t"),
        ],
    );
    let http = client();
    let base = format!("http://127.0.0.1:{port}");

    let (status, health) = homeiq.first_answer(&http, &format!("{base}/health")).await;
    assert_eq!(
        status, 200,
        "the watchdog must see the process alive: {health}"
    );
    assert_eq!(health["status"], "config_error", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        keys(&health),
        ["influxdb.batch_size", "influxdb.max_in_flight"],
        "{health}"
    );
    assert!(
        health["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1..=100000")),
        "{health}"
    );

    let deep = http
        .get(format!("{base}/health/deep"))
        .send()
        .await
        .expect("deep");
    assert_eq!(deep.status().as_u16(), 503);
    let deep: Value = deep.json().await.expect("json");
    assert_eq!(deep["status"], "config_error");

    for path in [
        "/api/v1/devices",
        "/api/v1/history?entity_id=light.x",
        "/metrics",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 503, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "config_error", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("influxdb.batch_size"), "{path}: {body}");
    }
    // the ingress panel shows the problem as a page
    let page = http
        .get(format!("{base}/"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 503);
    assert!(
        page.text()
            .await
            .expect("text")
            .contains("influxdb.max_in_flight")
    );

    let log = homeiq.log();
    for key in ["influxdb.batch_size", "influxdb.max_in_flight"] {
        assert!(
            log.lines()
                .any(|l| l.contains("invalid configuration") && l.contains(key)),
            "the log must name {key}:\n{log}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing may be written to the data folder"
    );
    assert_eq!(homeiq.stop(), Some(0), "{}", homeiq.log());
}

#[tokio::test]
async fn a_value_of_the_wrong_type_and_missing_home_assistant_settings_are_reported() {
    let http = client();
    // a wrong type in the environment; the port still comes from it
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HTTP__PORT", port.as_str()),
            ("HOMEIQ_INFLUXDB__SCHEMA", "grafana"),
        ],
    );
    let (status, health) = homeiq
        .first_answer(&http, &format!("http://127.0.0.1:{port}/health"))
        .await;
    assert_eq!(
        (status, keys(&health)),
        (200, vec!["influxdb.schema".to_owned()])
    );
    assert_eq!(homeiq.stop(), Some(0));

    // valid settings, but outside the add-on without ha.url / ha.token
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    let mut homeiq = Serve::start(dir.path(), &[("HOMEIQ_HTTP__PORT", port.as_str())]);
    let (status, health) = homeiq
        .first_answer(&http, &format!("http://127.0.0.1:{port}/health"))
        .await;
    assert_eq!((status, keys(&health)), (200, vec!["ha.url".to_owned()]));
    assert!(homeiq.log().contains("ha.url"));
    assert_eq!(homeiq.stop(), Some(0));
}

/// Bytes that are no SQLite database: a deterministic pseudo-random fill.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

/// A valid SQLite database of about 1.5 MB (the embedded store's table, filled), as bytes.
fn valid_database() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("valid.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(
        "CREATE TABLE points (entity_id TEXT NOT NULL, time_us INTEGER NOT NULL, \
         domain TEXT NOT NULL, state TEXT, value REAL, attributes TEXT NOT NULL DEFAULT '{}', \
         PRIMARY KEY (entity_id, time_us)) WITHOUT ROWID;
         CREATE INDEX points_by_time ON points (time_us, domain);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("tx");
    for i in 0..20_000_i64 {
        tx.execute(
            "INSERT INTO points VALUES (?1, ?2, 'sensor', ?3, ?4, '{\"a\":1}')",
            rusqlite::params![format!("sensor.s{}", i % 50), i, i.to_string(), i as f64],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    drop(conn);
    let bytes = std::fs::read(&path).expect("read");
    assert!(bytes.len() > 1_000_000 && bytes.starts_with(b"SQLite format 3\0"));
    bytes
}

/// Writes `contents` as `file` into a fresh data folder (`None`: makes `file` a directory),
/// starts `homeiq serve` (embedded storage when `embedded`) and checks it serves `storage_error`
/// naming the file, `database`, the `failure` and SQLite's `sqlite_says`, keeps running, answers
/// the API with 503 and leaves the file untouched.
async fn reports_storage_error(
    file: &str,
    contents: Option<&[u8]>,
    embedded: bool,
    (database, failure): (&str, &str),
    sqlite_says: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let path = data.join(file);
    match contents {
        Some(contents) => std::fs::write(&path, contents).expect("write the damaged file"),
        None => std::fs::create_dir(&path).expect("a directory in the file's place"),
    }
    let port = common::free_port().to_string();
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let mut env = vec![
        ("HOMEIQ_HTTP__BIND", "127.0.0.1"),
        ("HOMEIQ_HTTP__PORT", port.as_str()),
        ("HOMEIQ_HA__URL", closed.as_str()),
        ("HOMEIQ_HA__TOKEN", "t"),
        ("HOMEIQ_INFLUXDB__URL", closed.as_str()),
    ];
    if embedded {
        env.push(("HOMEIQ_STORAGE", "embedded"));
    }
    let mut homeiq = Serve::start(dir.path(), &env);
    let http = client();
    let base = format!("http://127.0.0.1:{port}");
    let shown = path.display().to_string();

    let (status, health) = homeiq.first_answer(&http, &format!("{base}/health")).await;
    assert_eq!(
        status, 200,
        "the watchdog must see the process alive: {health}"
    );
    assert_eq!(health["status"], "storage_error", "{health}");
    let fault = &health["storage_file"];
    assert_eq!(fault["database"], database, "{health}");
    assert_eq!(fault["path"], shown.as_str(), "{health}");
    assert_eq!(fault["failure"], failure, "{health}");
    assert!(
        fault["error"]
            .as_str()
            .is_some_and(|e| e.contains(sqlite_says)),
        "SQLite's error, {sqlite_says:?}: {health}"
    );
    let action = fault["action"].as_str().unwrap_or_default();
    assert!(
        action.contains(&shown) && action.contains("backup"),
        "{health}"
    );
    if failure == "damaged" {
        assert!(action.contains(&format!("Move {shown} aside")), "{health}");
    }
    assert!(
        health["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains(&shown)),
        "{health}"
    );

    let deep = http
        .get(format!("{base}/health/deep"))
        .send()
        .await
        .expect("deep");
    assert_eq!(deep.status().as_u16(), 503);
    let deep: Value = deep.json().await.expect("json");
    assert_eq!(deep["storage_file"]["path"], shown.as_str(), "{deep}");
    for path in ["/api/v1/devices", "/api/v1/metrics/realtime", "/metrics"] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 503, "{path}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "storage_error", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&shown)),
            "{path}: {body}"
        );
    }
    let page = http
        .get(format!("{base}/"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status().as_u16(), 503);
    assert!(page.text().await.expect("text").contains(&shown));

    assert!(
        homeiq.child.try_wait().expect("try_wait").is_none(),
        "still running: {}",
        homeiq.log()
    );
    assert!(
        homeiq
            .log()
            .lines()
            .any(|l| l.contains("cannot open a database file") && l.contains(&shown)),
        "the log names the file:\n{}",
        homeiq.log()
    );
    assert_eq!(homeiq.stop(), Some(0), "{}", homeiq.log());
    if let Some(contents) = contents {
        assert_eq!(
            std::fs::read(&path).expect("the file is still there"),
            contents,
            "HomeIQ never changes or deletes the damaged file"
        );
    }
}

#[tokio::test]
async fn a_garbage_metadata_database_is_reported_in_health_instead_of_exiting() {
    let garbage = garbage(64 * 1024);
    let damaged = ("metadata", "damaged");
    reports_storage_error(
        "homeiq.db",
        Some(&garbage),
        false,
        damaged,
        "not a database",
    )
    .await;
}

#[tokio::test]
async fn a_garbage_history_database_is_reported_in_health_instead_of_exiting() {
    let garbage = garbage(64 * 1024);
    let damaged = ("history", "damaged");
    reports_storage_error(
        "history.db",
        Some(&garbage),
        true,
        damaged,
        "not a database",
    )
    .await;
}

#[tokio::test]
async fn a_truncated_or_garbled_header_database_is_reported_in_health() {
    let valid = valid_database();
    // cut in half: SQLite finds the file shorter than its header says
    let truncated = &valid[..valid.len() / 2];
    let damaged = ("history", "damaged");
    reports_storage_error("history.db", Some(truncated), true, damaged, "malformed").await;
    // the magic string of the header overwritten
    let mut garbled = valid.clone();
    garbled[..16].copy_from_slice(b"HomeIQ broke it!");
    let damaged = ("metadata", "damaged");
    reports_storage_error(
        "homeiq.db",
        Some(&garbled),
        false,
        damaged,
        "not a database",
    )
    .await;
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_for_another_reason_is_reported_too() {
    // a directory where the file should be: not damaged, but unusable
    let unusable = ("metadata", "unusable");
    reports_storage_error("homeiq.db", None, false, unusable, "unable to open").await;
}

/// An address of this machine other than loopback, if it has one (no packet is sent: a UDP
/// socket "connected" to a documentation address only picks the outgoing interface).
fn outward_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn outside_the_addon_homeiq_listens_on_loopback_and_an_open_api_is_a_configuration_error() {
    let http = client();
    // no http.bind: loopback only (the default used to be every address, with the API open)
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HTTP__PORT", port.as_str()),
            ("HOMEIQ_STORAGE", "embedded"),
            ("HOMEIQ_HA__URL", "http://127.0.0.1:9"),
            ("HOMEIQ_HA__TOKEN", "t"),
        ],
    );
    let (status, health) = homeiq
        .first_answer(&http, &format!("http://127.0.0.1:{port}/health"))
        .await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    if let Some(ip) = outward_address() {
        let url = format!(
            "http://{}/health",
            std::net::SocketAddr::new(ip, port.parse().expect("port"))
        );
        assert!(
            http.get(&url).send().await.is_err(),
            "{url} answered: the API is reachable from other machines"
        );
    } else {
        eprintln!("no address besides loopback here: the reachability check is skipped");
    }
    assert_eq!(homeiq.stop(), Some(0), "{}", homeiq.log());

    // every address without a token: reported like any other invalid option, where it was asked
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HTTP__PORT", port.as_str()),
            ("HOMEIQ_HTTP__BIND", "0.0.0.0"),
            ("HOMEIQ_STORAGE", "embedded"),
            ("HOMEIQ_HA__URL", "http://127.0.0.1:9"),
            ("HOMEIQ_HA__TOKEN", "t"),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let (status, health) = homeiq.first_answer(&http, &format!("{base}/health")).await;
    assert_eq!(
        (status, keys(&health)),
        (200, vec!["http.bind".to_owned()]),
        "{health}"
    );
    assert_eq!(health["status"], "config_error");
    assert!(
        health["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("http.api_token")),
        "{health}"
    );
    let r = http
        .post(format!("{base}/api/v1/webhooks"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 503);
    assert!(homeiq.log().contains("http.bind"));
    assert_eq!(homeiq.stop(), Some(0));

    // with a token the same address is fine
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HTTP__PORT", port.as_str()),
            ("HOMEIQ_HTTP__BIND", "0.0.0.0"),
            ("HOMEIQ_HTTP__API_TOKEN", "a-long-enough-token"),
            ("HOMEIQ_STORAGE", "embedded"),
            ("HOMEIQ_HA__URL", "http://127.0.0.1:9"),
            ("HOMEIQ_HA__TOKEN", "t"),
        ],
    );
    let (status, health) = homeiq
        .first_answer(&http, &format!("http://127.0.0.1:{port}/health"))
        .await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    assert_eq!(homeiq.stop(), Some(0));
}

#[tokio::test]
async fn passwords_in_urls_are_not_shown_by_the_configuration_error_report() {
    let http = client();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port().to_string();
    // an invalid URL with user information: the error names the value, without the password
    let mut homeiq = Serve::start(
        dir.path(),
        &[
            ("HOMEIQ_HTTP__PORT", port.as_str()),
            (
                "HOMEIQ_INFLUXDB__URL",
                "http://admin:pw-in-url-77@influx host:8086",
            ),
            ("HOMEIQ_HA__URL", "http://127.0.0.1:9"),
            ("HOMEIQ_HA__TOKEN", "t"),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let (status, health) = homeiq.first_answer(&http, &format!("{base}/health")).await;
    assert_eq!(
        (status, keys(&health)),
        (200, vec!["influxdb.url".to_owned()]),
        "{health}"
    );
    let text = health.to_string();
    assert!(text.contains("http://***@influx host:8086"), "{text}");
    let page = http
        .get(format!("{base}/"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert_eq!(homeiq.stop(), Some(0));
    for (what, text) in [
        ("/health", text),
        ("the page", page),
        ("the log", homeiq.log()),
    ] {
        assert!(
            !text.contains("pw-in-url-77"),
            "{what} shows the password:\n{text}"
        );
    }
}
