//! Writer tests against the real InfluxDB (`INFLUX_URL`), some through a small local HTTP/1.1
//! server that fails on command and otherwise forwards to the real InfluxDB.

use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::store::influx::test_support::{
    closed_port, count, fresh_settings, influx_url, server_port,
};
use crate::store::point::FieldValue;

fn point(i: i64) -> Point {
    Point::new("sensor", 1_700_000_000_000 + i)
        .tag("entity_id", format!("sensor.s{}", i % 7))
        .field("state", FieldValue::Str(i.to_string()))
        .field("value", FieldValue::Float(i as f64))
}

/// Polls `check` every 20 ms until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn test_config(settings: &InfluxSettings) -> WriterConfig {
    WriterConfig {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        auth_backoff: Duration::from_millis(500),
        ..WriterConfig::from_settings(settings)
    }
}

/// A fake InfluxDB answering in `mode` in front of a fresh real database: the fake, settings that
/// point at it (adjusted by `tweak`), and a client of the real database, which exists.
async fn fake_in_front(
    test: &str,
    mode: Mode,
    tweak: impl FnOnce(&mut InfluxSettings),
) -> (FakeInflux, InfluxSettings, InfluxClient) {
    let real = fresh_settings(test);
    let fake = FakeInflux::start(influx_url(), mode).await;
    let mut settings = InfluxSettings {
        url: fake.url.clone(),
        ..real.clone()
    };
    tweak(&mut settings);
    let client = InfluxClient::new(&real).expect("client");
    client.create_database().await.expect("create");
    (fake, settings, client)
}

/// A memory-only writer with the tests' short back-offs, writing to `settings.url`.
fn memory_writer(settings: &InfluxSettings) -> WriterHandle {
    spawn_writer_with(
        test_config(settings),
        InfluxClient::new(settings).expect("client"),
        Precision::Millis,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_point_is_flushed_after_the_linger() {
    let settings = InfluxSettings {
        flush_interval_ms: 200,
        ..fresh_settings("w_linger")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer(&settings, client.clone(), Precision::Millis);
    let pushed = Instant::now();
    writer.push(point(1));
    let arrived = eventually(Duration::from_secs(3), || async {
        count(&client, "state", "sensor").await == 1
    })
    .await;
    let took = pushed.elapsed();
    assert!(arrived, "point never arrived");
    // no upper bound on the time: speed belongs in benchmarks, this machine is shared and noisy
    assert!(
        took >= Duration::from_millis(150),
        "sent before the linger: {took:?}"
    );
    // the point can be queryable before the writer has read InfluxDB's 204
    assert!(
        eventually(Duration::from_secs(3), || async {
            writer.stats().counts.written == 1
        })
        .await,
        "the write was not counted"
    );
    let s = writer.stats();
    assert!(s.reachable);
    assert!(s.last_write_at.is_some());
    assert!(s.last_latency_ms.is_some() && s.mean_latency_ms.is_some());
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 1,
            spooled: 0,
            left: 0
        }
    );
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_points_go_in_full_batches() {
    let settings = InfluxSettings {
        batch_size: 1_000,
        flush_interval_ms: 60_000,
        ..fresh_settings("w_batches")
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spawn_writer(&settings, client.clone(), Precision::Millis);
    for i in 0..20_000 {
        writer.push(point(i));
    }
    // With a one-minute linger only full batches can have been sent.
    assert!(
        eventually(Duration::from_secs(20), || async {
            writer.stats().counts.written == 20_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    assert_eq!(count(&client, "state", "sensor").await, 20_000);
    let s = writer.stats();
    assert_eq!(
        (s.queued, s.in_flight, s.counts.dropped_overflow),
        (0, 0, 0)
    );
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.left, 0);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_conflict_drops_one_point_and_keeps_the_rest() {
    let settings = InfluxSettings {
        flush_interval_ms: 100,
        ..fresh_settings("w_conflict")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer(&settings, client.clone(), Precision::Millis);
    writer.push(point(0));
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.written == 1
        })
        .await
    );
    for i in 1..=10 {
        let mut p = point(i);
        if i == 5 {
            p.fields[1].1 = FieldValue::Str("not a number".into());
        }
        writer.push(p);
    }
    let probe = writer.clone();
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 10,
            spooled: 0,
            left: 0
        }
    );
    let s = probe.stats();
    assert_eq!(
        (
            s.influx().counts.dropped_rejected,
            s.influx().counts.quarantined
        ),
        (1, 1)
    );
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("field type conflict")),
        "{s:?}"
    );
    let q = probe.quarantine(10, 0);
    assert_eq!(q.len(), 1);
    assert!(q[0].line.contains("value=\"not a number\""), "{q:?}");
    assert!(q[0].reason.contains("field type conflict"), "{q:?}");
    assert_eq!(count(&client, "value", "sensor").await, 10);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_created_and_the_batch_resent() {
    let settings = InfluxSettings {
        flush_interval_ms: 50,
        ..fresh_settings("w_404")
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spawn_writer(&settings, client.clone(), Precision::Millis);
    // Wait for the start-up creation, then pull the database away.
    assert!(
        eventually(Duration::from_secs(5), || async {
            client
                .query("SHOW DATABASES")
                .await
                .map(|r| {
                    r.first_series().iter().any(|s| {
                        s.values
                            .iter()
                            .any(|v| v.first().and_then(|d| d.as_str()) == Some(client.database()))
                    })
                })
                .unwrap_or(false)
        })
        .await
    );
    client.drop_database().await.expect("drop");
    for i in 0..5 {
        writer.push(point(i));
    }
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 5,
            spooled: 0,
            left: 0
        }
    );
    assert_eq!(count(&client, "state", "sensor").await, 5);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_keeps_a_bounded_queue_and_counts_retries() {
    let settings = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        database: "never".into(),
        batch_size: 10,
        flush_interval_ms: 10,
        queue_capacity: 100,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spawn_writer_with(test_config(&settings), client, Precision::Millis);
    for i in 0..500 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.retries >= 3
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert_eq!(s.counts.written, 0);
    assert!(!s.reachable);
    assert!(s.counts.write_errors >= 3);
    assert!(s.queued + s.in_flight <= 100, "{s:?}");
    assert_eq!(
        s.counts.dropped_overflow as usize + s.queued + s.in_flight,
        500,
        "{s:?}"
    );
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| !e.contains("127.0.0.1"))
    );
    let started = Instant::now();
    let report = writer.shutdown(Duration::from_millis(800)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report.written, 0);
    assert_eq!(report.left, 100);
}

/// What the local server does with the next requests.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
enum Mode {
    /// Forward to the real InfluxDB.
    Proxy = 0,
    /// Answer 503 with an InfluxDB-style error body.
    Unavailable = 503,
    /// Answer 429 with `Retry-After: 1`.
    TooMany = 429,
    /// Answer 401.
    Unauthorized = 401,
    /// Answer 413 to bodies over 2 kB, forward the rest.
    SmallBodies = 413,
    /// Read requests and never answer.
    Hang = 1,
    /// Forward to the real InfluxDB after 200 ms.
    Slow = 2,
}

struct FakeInflux {
    url: String,
    mode: Arc<AtomicU16>,
    writes: Arc<AtomicUsize>,
    write_times: Arc<Mutex<Vec<Instant>>>,
}

impl FakeInflux {
    async fn start(upstream: String, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let mode = Arc::new(AtomicU16::new(mode as u16));
        let writes = Arc::new(AtomicUsize::new(0));
        let write_times = Arc::new(Mutex::new(Vec::new()));
        let (m, w, t) = (
            Arc::clone(&mode),
            Arc::clone(&writes),
            Arc::clone(&write_times),
        );
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Ok((conn, _)) = listener.accept().await {
                let (m, w, t, http, up) = (
                    Arc::clone(&m),
                    Arc::clone(&w),
                    Arc::clone(&t),
                    http.clone(),
                    upstream.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve(conn, m, w, t, http, up).await;
                });
            }
        });
        FakeInflux {
            url,
            mode,
            writes,
            write_times,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u16, Ordering::SeqCst);
    }
}

/// Serves HTTP/1.1 requests on one connection (keep-alive, `Content-Length` bodies).
async fn serve(
    mut conn: TcpStream,
    mode: Arc<AtomicU16>,
    writes: Arc<AtomicUsize>,
    times: Arc<Mutex<Vec<Instant>>>,
    http: reqwest::Client,
    upstream: String,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut length = 0usize;
        let mut headers = Vec::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                if ["content-type", "content-encoding", "authorization"].contains(&k.as_str()) {
                    headers.push((k, v));
                }
            }
        }
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf[head_end..head_end + length].to_vec();
        buf.drain(..head_end + length);

        let is_write = target.starts_with("/write");
        if is_write {
            writes.fetch_add(1, Ordering::SeqCst);
            lock(&times).push(Instant::now());
        }
        let current = mode.load(Ordering::SeqCst);
        if current == Mode::Hang as u16 {
            std::future::pending::<()>().await;
        }
        if current == Mode::Slow as u16 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let local: Option<(u16, &str, String, &str)> = match current {
            503 if is_write => Some((
                503,
                "Service Unavailable",
                r#"{"error":"hinted handoff queue not empty"}"#.into(),
                "",
            )),
            429 if is_write => Some((
                429,
                "Too Many Requests",
                r#"{"error":"slow down"}"#.into(),
                "Retry-After: 1\r\n",
            )),
            401 => Some((
                401,
                "Unauthorized",
                r#"{"error":"authorization failed"}"#.into(),
                "",
            )),
            413 if is_write && body.len() > 2_048 => Some((
                413,
                "Request Entity Too Large",
                r#"{"error":"Request Entity Too Large"}"#.into(),
                "",
            )),
            _ => None,
        };
        let (status, reason, text, extra) = match local {
            Some(r) => r,
            None => {
                let url = format!("{upstream}{target}");
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
                let mut req = http.request(method, url).body(body);
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        (status, "Proxied", text, "")
                    }
                    Err(_) => (502, "Bad Gateway", r#"{"error":"upstream"}"#.into(), ""),
                }
            }
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Influxdb-Version: fake\r\n{extra}Content-Length: {}\r\n\r\n{text}",
            text.len()
        );
        conn.write_all(response.as_bytes()).await?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retried_and_recovers() {
    let (fake, settings, client) = fake_in_front("w_outage", Mode::Unavailable, |s| {
        s.flush_interval_ms = 20;
        s.batch_size = 20;
    })
    .await;
    let writer = memory_writer(&settings);
    for i in 0..50 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.retries >= 3
        })
        .await
    );
    let s = writer.stats();
    assert_eq!(s.counts.written, 0);
    assert!(s.reachable, "503 is an answer");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("hinted handoff")),
        "{s:?}"
    );
    assert_eq!(s.queued + s.in_flight, 50);
    fake.set(Mode::Proxy);
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 50,
            spooled: 0,
            left: 0
        }
    );
    assert_eq!(count(&client, "state", "sensor").await, 50);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let (fake, settings, client) = fake_in_front("w_retry_after", Mode::TooMany, |s| {
        s.flush_interval_ms = 10;
    })
    .await;
    let writer = memory_writer(&settings);
    writer.push(point(1));
    assert!(
        eventually(Duration::from_secs(3), || async {
            fake.writes.load(Ordering::SeqCst) >= 1
        })
        .await
    );
    fake.set(Mode::Proxy);
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.written == 1
        })
        .await
    );
    let times = lock(&fake.write_times).clone();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_reported_and_the_points_kept() {
    let (fake, settings, client) = fake_in_front("w_auth", Mode::Unauthorized, |s| {
        s.flush_interval_ms = 10;
    })
    .await;
    let writer = memory_writer(&settings);
    for i in 0..3 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            writer.stats().influx().auth_error.is_some()
        })
        .await
    );
    let s = writer.stats();
    assert_eq!(s.queued + s.in_flight, 3);
    assert_eq!(s.counts.written, 0);
    fake.set(Mode::Proxy);
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.written == 3
        })
        .await
    );
    assert_eq!(writer.stats().influx().auth_error, None);
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_batches_are_split() {
    let (fake, settings, client) = fake_in_front("w_split", Mode::SmallBodies, |s| {
        s.flush_interval_ms = 50;
        s.batch_size = 200;
    })
    .await;
    let writer = memory_writer(&settings);
    for i in 0..200 {
        writer.push(point(i));
    }
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 200,
            spooled: 0,
            left: 0
        }
    );
    assert_eq!(count(&client, "state", "sensor").await, 200);
    assert!(fake.writes.load(Ordering::SeqCst) > 3);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_and_invalid_points() {
    let settings = InfluxSettings {
        gzip: true,
        flush_interval_ms: 20,
        ..fresh_settings("w_gzip")
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spawn_writer(&settings, client.clone(), Precision::Micros);
    for i in 0..100 {
        writer.push(point(i));
    }
    writer.push(Point::new("sensor", 1).field("value", FieldValue::Float(f64::NAN)));
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 100,
            spooled: 0,
            left: 0
        }
    );
    assert_eq!(count(&client, "state", "sensor").await, 100);
    client.drop_database().await.expect("drop");
}

#[tokio::test]
async fn push_after_shutdown_is_counted_and_stats_serialise() {
    let settings = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        ..InfluxSettings::default()
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spawn_writer(&settings, client, Precision::Millis);
    let other = writer.clone();
    let report = writer.shutdown(Duration::from_millis(100)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 0,
            spooled: 0,
            left: 0
        }
    );
    other.push(point(1));
    let s = other.stats();
    assert_eq!(s.counts.dropped_overflow, 1);
    let json = serde_json::to_value(&s).expect("serialises");
    assert_eq!(json["dropped_overflow"], 1);
    assert_eq!(json["backend"], "influxdb");
    assert!(json["influxdb"].get("auth_error").is_some());
}

// ---- The spool -------------------------------------------------------------------------------

/// A spooled writer with short back-offs writing to `settings`, its spool in `dir`.
async fn spooled(settings: &InfluxSettings, dir: &Path, limits: SpoolLimits) -> WriterHandle {
    spawn_spooled_with(
        test_config(settings),
        limits,
        dir,
        InfluxClient::new(settings).expect("client"),
        Precision::Millis,
    )
    .await
    .expect("spool opens")
}

fn unbounded() -> SpoolLimits {
    SpoolLimits::new(1 << 30, 0)
}

/// Pushes points `from..to` in bursts of `burst`, letting the writer take each burst before the
/// next (as a live feed would).
async fn feed(writer: &WriterHandle, from: i64, to: i64, burst: i64, room: usize) {
    let mut i = from;
    while i < to {
        let end = (i + burst).min(to);
        for k in i..end {
            writer.push(point(k));
        }
        i = end;
        assert!(
            eventually(Duration::from_secs(20), || async {
                let s = writer.stats();
                s.queued + s.in_flight <= room
            })
            .await,
            "the writer does not take points: {:?}",
            writer.stats()
        );
    }
}

/// An InfluxDB of our own (`start-influxdb` from the shared tools), to stop and start.
struct OwnInflux {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnInflux {
    /// A script of the shared folder (`HOMEIQ_SHARED`, else `../shared`, as the integration
    /// tests find it).
    fn script(name: &str) -> std::path::PathBuf {
        std::env::var_os("HOMEIQ_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
            .join("influxdb")
            .join(name)
    }

    async fn run(&self, name: &str) {
        let out = self.try_run(name).await;
        assert!(
            out.status.success(),
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn try_run(&self, name: &str) -> std::process::Output {
        let script = Self::script(name);
        let dir = self.dir.path().to_path_buf();
        let port = self.port.to_string();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(script)
                .arg(dir)
                .arg(port)
                .output()
        })
        .await
        .expect("join")
        .expect("script runs")
    }

    /// Starts it on a port of its own; a port taken between the draw and `influxd`'s bind is
    /// drawn again (a few times).
    async fn start() -> Self {
        let mut own = OwnInflux {
            dir: tempfile::tempdir().expect("tempdir"),
            port: server_port(),
        };
        for _ in 0..4 {
            let out = own.try_run("start-influxdb").await;
            if out.status.success()
                || !String::from_utf8_lossy(&out.stderr).contains("address already in use")
            {
                break;
            }
            own.port = server_port();
        }
        own.run("start-influxdb").await;
        own
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnInflux {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script("stop-influxdb"))
            .arg(self.dir.path())
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_influxdb_outage_is_spooled_and_replayed_exactly_once() {
    let own = OwnInflux::start().await;
    let settings = InfluxSettings {
        url: own.url(),
        database: "outage".into(),
        batch_size: 200,
        flush_interval_ms: 20,
        timeout_secs: 2,
        ..InfluxSettings::default()
    };
    let client = InfluxClient::new(&settings).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    feed(&writer, 0, 1_000, 250, 1_000).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().counts.written == 1_000
        })
        .await
    );
    own.run("stop-influxdb").await;
    // During the outage everything goes to disk: nothing piles up in memory.
    feed(&writer, 1_000, 4_000, 250, 250).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = writer.stats();
            s.influx().spool_points == 3_000 && s.queued + s.in_flight == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert!(s.influx().spooling && !s.reachable, "{s:?}");
    assert!(
        s.influx().spool_bytes > 0 && s.influx().spool_oldest_age_secs.is_some(),
        "{s:?}"
    );
    assert_eq!(s.counts.written, 1_000);
    own.run("start-influxdb").await;
    feed(&writer, 4_000, 4_500, 250, 1_000).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = writer.stats();
            s.counts.written == 4_500 && s.influx().spool_points == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    // at least every spooled point; a replay request cut off under load and sent again is counted
    // again (the points themselves land once: InfluxDB's count below is exact)
    assert!(s.influx().counts.replayed >= 3_000, "{s:?}");
    assert!(
        !s.influx().spooling && s.influx().spool_oldest_age_secs.is_none(),
        "{s:?}"
    );
    assert_eq!(
        (
            s.counts.dropped_overflow,
            s.influx().spool.spool_dropped,
            s.influx().counts.quarantined
        ),
        (0, 0, 0)
    );
    // Every point once: 4,500 distinct (series, time) pairs.
    assert_eq!(count(&client, "state", "sensor").await, 4_500);
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.spooled, report.left), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reopens_the_spool_cuts_a_torn_tail_and_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        batch_size: 500,
        flush_interval_ms: 20,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let writer = spooled(&down, dir.path(), unbounded()).await;
    feed(&writer, 0, 5_000, 1_000, 1_000).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().influx().spool_points == 5_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let report = writer.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 0,
            spooled: 0,
            left: 0
        }
    );
    // A crash while a record was being appended leaves a torn tail: simulate one.
    let newest = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "spool"))
        .max()
        .expect("a segment");
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("open");
    std::io::Write::write_all(&mut torn, &[7, 0, 0, 0, 1, 2, 3]).expect("write");
    drop(torn);

    let settings = InfluxSettings {
        batch_size: 500,
        ..fresh_settings("w_restart")
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = writer.stats();
            s.influx().counts.replayed == 5_000 && s.influx().spool_points == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    assert_eq!(count(&client, "state", "sensor").await, 5_000);
    assert_eq!(writer.stats().influx().spool.spool_dropped, 0);
    writer.shutdown(Duration::from_secs(2)).await;
    // Nothing is replayed twice after the next restart.
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    assert_eq!(writer.stats().influx().spool_points, 0);
    writer.shutdown(Duration::from_secs(1)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_spool_record_is_skipped_alone_and_reported_in_the_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        batch_size: 500,
        flush_interval_ms: 20,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let writer = spooled(&down, dir.path(), unbounded()).await;
    feed(&writer, 0, 5_000, 1_000, 1_000).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().influx().spool_points == 5_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    writer.shutdown(Duration::from_secs(2)).await;
    // One flipped byte in the first record of the segment.
    let newest = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "spool")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 16)
        })
        .max()
        .expect("a segment");
    let mut bytes = std::fs::read(&newest).expect("read");
    let first_points = u64::from(u32::from_le_bytes([
        bytes[24], bytes[25], bytes[26], bytes[27],
    ]));
    assert!(first_points > 0 && first_points < 5_000);
    bytes[16 + 24 + 40] ^= 0x20;
    std::fs::write(&newest, &bytes).expect("write");

    let settings = InfluxSettings {
        batch_size: 500,
        ..fresh_settings("w_damaged")
    };
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    let rest = 5_000 - first_points;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = writer.stats();
            s.influx().counts.replayed == rest && s.influx().spool_points == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    assert_eq!(count(&client, "state", "sensor").await, rest);
    let s = writer.stats();
    assert_eq!(
        (
            s.influx().spool.spool_dropped,
            s.influx().spool.spool_corrupt_records
        ),
        (first_points, 1),
        "{s:?}"
    );
    assert!(
        s.influx().spool.spool_corrupt_bytes > first_points * 4,
        "{s:?}"
    );
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_spools_what_it_cannot_write() {
    let (_fake, settings, client) = fake_in_front("w_shutdown_spool", Mode::Hang, |s| {
        s.batch_size = 100;
        s.flush_interval_ms = 10;
        s.timeout_secs = 30;
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    for i in 0..1_000 {
        writer.push(point(i));
    }
    // Two requests hang, the rest waits in memory.
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().in_flight == 200
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let started = Instant::now();
    let report = writer.shutdown(Duration::from_millis(1_500)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        report,
        ShutdownReport {
            written: 0,
            spooled: 1_000,
            left: 0
        }
    );
    // The next start, with InfluxDB itself answering, writes them.
    let real = InfluxSettings {
        url: influx_url(),
        ..settings.clone()
    };
    let writer = spooled(&real, dir.path(), unbounded()).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().influx().counts.replayed == 1_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    assert_eq!(count(&client, "state", "sensor").await, 1_000);
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_type_conflicts_are_quarantined_with_the_reason_and_the_rest_written() {
    let settings = InfluxSettings {
        flush_interval_ms: 20,
        ..fresh_settings("w_quarantine")
    };
    let client = InfluxClient::new(&settings).expect("client");
    client.create_database().await.expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    // `x` is a float in InfluxDB first...
    writer.push(Point::new("m", 1).field("x", FieldValue::Float(1.0)));
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().counts.written == 1
        })
        .await
    );
    // ...then a batch where two points write it as a string.
    for i in 2..=11 {
        let v = if i % 4 == 0 {
            FieldValue::Str(format!("a{i}"))
        } else {
            FieldValue::Float(i as f64)
        };
        writer.push(Point::new("m", i).field("x", v));
    }
    // A conflict inside one batch for a new field: InfluxDB writes none of it and names nothing.
    for (i, v) in [
        FieldValue::Float(1.0),
        FieldValue::Str("b".into()),
        FieldValue::Float(2.0),
        FieldValue::Str("c".into()),
    ]
    .into_iter()
    .enumerate()
    {
        writer.push(Point::new("n", i as i64 + 1).field("y", v));
    }
    let probe = writer.clone();
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!((report.written, report.spooled, report.left), (11, 0, 0));
    let s = probe.stats();
    assert_eq!(
        (
            s.influx().counts.quarantined,
            s.influx().counts.dropped_rejected
        ),
        (4, 4),
        "{s:?}"
    );
    assert_eq!(count(&client, "x", "m").await, 9);
    assert_eq!(count(&client, "y", "n").await, 2);
    let q = probe.quarantine(100, 0);
    assert_eq!(probe.quarantine_len(), 4);
    let lines: Vec<&str> = q.iter().map(|p| p.line.as_str()).collect();
    for want in ["m x=\"a4\" 4", "m x=\"a8\" 8", "n y=\"b\" 2", "n y=\"c\" 4"] {
        assert!(lines.contains(&want), "{want} not in {lines:?}");
    }
    let a4 = q.iter().find(|p| p.line == "m x=\"a4\" 4").expect("a4");
    assert!(
        a4.reason.contains("field type conflict")
            && a4
                .reason
                .contains("input field \"x\" on measurement \"m\" is type string"),
        "{a4:?}"
    );
    assert!(!a4.reason.contains("dropped="), "{a4:?}");
    // Paging: newest first.
    assert_eq!(probe.quarantine(2, 2).len(), 2);
    assert_eq!(probe.quarantine(2, 3).len(), 1);
    assert!(probe.quarantine(2, 4).is_empty());
    // Kept across restarts.
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    assert_eq!(writer.quarantine_len(), 4);
    assert_eq!(writer.quarantine(1, 0)[0].line, q[0].line);
    writer.shutdown(Duration::from_secs(1)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_bound_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        batch_size: 100,
        flush_interval_ms: 10,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let max = 128 << 10;
    let writer = spooled(&down, dir.path(), SpoolLimits::new(max, 0)).await;
    let n = 10_000;
    feed(&writer, 0, n, 500, 500).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = writer.stats();
            s.queued + s.in_flight == 0
                && s.influx().spool_points + s.influx().spool.spool_dropped == n as u64
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert!(s.influx().spool.spool_dropped > 0, "{s:?}");
    assert!(s.influx().spool_bytes <= max, "{s:?}");
    assert_eq!(s.counts.dropped_overflow, 0);
    let kept = s.influx().spool_points;
    writer.shutdown(Duration::from_secs(1)).await;
    // What is left is the newest: replayed, it is exactly the last `kept` points.
    let settings = fresh_settings("w_bound");
    let client = InfluxClient::new(&settings).expect("client");
    let writer = spooled(&settings, dir.path(), SpoolLimits::new(max, 0)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().influx().spool_points == 0
        })
        .await
    );
    assert_eq!(count(&client, "state", "sensor").await, kept);
    // The oldest went first. (Spool order is nearly point order: a batch whose write failed is
    // appended when the attempt ends, after batches spooled meanwhile.)
    let rows =
        crate::store::influx::test_support::query_rows(&client, "SELECT min(value) FROM sensor")
            .await;
    let min = rows[0][1].as_f64().unwrap_or(-1.0);
    assert!(
        min >= (n as u64 - kept) as f64 - 1_000.0,
        "{rows:?}, kept {kept}"
    );
    writer.shutdown(Duration::from_secs(1)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_influxdb_spills_to_the_spool_instead_of_dropping() {
    let (fake, settings, client) = fake_in_front("w_spill", Mode::Slow, |s| {
        s.batch_size = 100;
        s.flush_interval_ms = 10;
        s.queue_capacity = 1_000;
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    // About 1,000 points/s get through; 10,000 arrive within a second or two.
    feed(&writer, 0, 10_000, 1_000, 1_000).await;
    fake.set(Mode::Proxy);
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = writer.stats();
            s.counts.written == 10_000 && s.influx().spool_points == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert!(s.influx().counts.replayed > 0, "nothing was spilled: {s:?}");
    assert_eq!(
        (s.counts.dropped_overflow, s.influx().spool.spool_dropped),
        (0, 0),
        "{s:?}"
    );
    assert_eq!(count(&client, "state", "sensor").await, 10_000);
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_spool_and_recover() {
    let (fake, settings, client) = fake_in_front("w_auth_spool", Mode::Unauthorized, |s| {
        s.flush_interval_ms = 10;
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = spooled(&settings, dir.path(), unbounded()).await;
    for i in 0..30 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            let s = writer.stats();
            s.influx().auth_error.is_some() && s.influx().spool_points == 30
        })
        .await,
        "{:?}",
        writer.stats()
    );
    fake.set(Mode::Proxy);
    // the written count rises before the spool's bookkeeping of the same replay: wait for both
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = writer.stats();
            s.counts.written == 30 && s.influx().spool_points == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert_eq!(
        (
            s.influx().auth_error.clone(),
            s.influx().spool_points,
            s.influx().counts.replayed
        ),
        (None, 0, 30)
    );
    writer.shutdown(Duration::from_secs(2)).await;
    assert_eq!(count(&client, "state", "sensor").await, 30);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_go_on_while_the_spool_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        batch_size: 1_000,
        flush_interval_ms: 10,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let writer = spooled(&down, dir.path(), unbounded()).await;
    feed(&writer, 0, 20_000, 5_000, 5_000).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            writer.stats().influx().spool_points == 20_000
        })
        .await
    );
    writer.shutdown(Duration::from_secs(1)).await;

    // InfluxDB is back but slow (200 ms a request): replaying 20 requests of 1,000 points, two
    // at a time, takes about 2 s.
    let (_fake, settings, client) = fake_in_front("w_fair", Mode::Slow, |s| {
        s.batch_size = 1_000;
        s.flush_interval_ms = 10;
    })
    .await;
    let config = WriterConfig {
        replay_points: 1_000,
        ..test_config(&settings)
    };
    let writer = spawn_spooled_with(
        config,
        unbounded(),
        dir.path(),
        InfluxClient::new(&settings).expect("client"),
        Precision::Millis,
    )
    .await
    .expect("spool opens");
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().influx().counts.replayed > 0
        })
        .await
    );
    for i in 0..10 {
        writer.push(point(100_000 + i));
    }
    // Live points have their own request slots: they do not wait for the backlog.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = writer.stats();
            s.counts.written - s.influx().counts.replayed == 10
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert!(
        s.influx().spool_points > 0,
        "live points waited for the replay: {s:?}"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            writer.stats().influx().spool_points == 0
        })
        .await
    );
    assert_eq!(writer.stats().influx().counts.replayed, 20_000);
    assert_eq!(count(&client, "state", "sensor").await, 20_010);
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_spool_counts_and_resumes() {
    let Some(disk) = crate::store::small_disk::SmallDisk::mount("4m") else {
        eprintln!("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let down = InfluxSettings {
        url: format!("http://127.0.0.1:{}", closed_port()),
        database: "full".into(),
        batch_size: 100,
        flush_interval_ms: 10,
        timeout_secs: 1,
        ..InfluxSettings::default()
    };
    let spool_dir = disk.path().join("spool");
    let writer = spooled(&down, &spool_dir, unbounded()).await;
    disk.fill(&disk.path().join("filler"));
    // InfluxDB is down and the disk is full: the appends fail, are counted, the writer goes on
    feed(&writer, 0, 2_000, 250, 250).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            let s = writer.stats();
            s.counts.disk_full > 0 && s.queued + s.in_flight == 0
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert!(s.influx().spool.spool_dropped > 0, "{s:?}");
    let lost = s.influx().spool.spool_dropped;
    // space returns: the next batches are spooled again
    std::fs::remove_file(disk.path().join("filler")).expect("remove filler");
    feed(&writer, 2_000, 3_000, 250, 250).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            writer.stats().influx().spool_points >= 1_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let spooled_points = writer.stats().influx().spool_points;
    assert_eq!(writer.stats().influx().spool.spool_dropped, lost);
    writer.shutdown(Duration::from_secs(2)).await;
    // the spool reopens intact with every point it took
    let writer = spooled(&down, &spool_dir, unbounded()).await;
    let s = writer.stats();
    assert_eq!(s.influx().spool_points, spooled_points, "{s:?}");
    assert_eq!(s.influx().spool.spool_corrupt_records, 0, "{s:?}");
    writer.shutdown(Duration::from_secs(1)).await;
}
