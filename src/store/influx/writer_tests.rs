//! Writer tests against the real InfluxDB (`INFLUX_URL`), some through a small local HTTP/1.1
//! server that fails on command and otherwise forwards to the real InfluxDB.

use std::sync::atomic::{AtomicU16, AtomicUsize};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::store::influx::line::FieldValue;
use crate::store::influx::test_support::{closed_port, count, fresh_settings, influx_url};

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
    assert!(took < Duration::from_millis(1_100), "took {took:?}");
    assert!(
        took >= Duration::from_millis(150),
        "sent before the linger: {took:?}"
    );
    let s = writer.stats();
    assert_eq!(s.written, 1);
    assert!(s.reachable);
    assert!(s.last_write_at.is_some());
    assert!(s.last_latency_ms.is_some() && s.mean_latency_ms.is_some());
    let report = writer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 1,
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
            writer.stats().written == 20_000
        })
        .await,
        "{:?}",
        writer.stats()
    );
    assert_eq!(count(&client, "state", "sensor").await, 20_000);
    let s = writer.stats();
    assert_eq!((s.queued, s.in_flight, s.dropped_overflow), (0, 0, 0));
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
            writer.stats().written == 1
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
            left: 0
        }
    );
    let s = probe.stats();
    assert_eq!(s.dropped_rejected, 1);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("field type conflict")),
        "{s:?}"
    );
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
            writer.stats().retries >= 3
        })
        .await,
        "{:?}",
        writer.stats()
    );
    let s = writer.stats();
    assert_eq!(s.written, 0);
    assert!(!s.reachable);
    assert!(s.write_errors >= 3);
    assert!(s.queued + s.in_flight <= 100, "{s:?}");
    assert_eq!(
        s.dropped_overflow as usize + s.queued + s.in_flight,
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
    let real = fresh_settings("w_outage");
    let fake = FakeInflux::start(influx_url(), Mode::Unavailable).await;
    let settings = InfluxSettings {
        url: fake.url.clone(),
        flush_interval_ms: 20,
        batch_size: 20,
        ..real.clone()
    };
    let client = InfluxClient::new(&real).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer_with(
        test_config(&settings),
        InfluxClient::new(&settings).expect("client"),
        Precision::Millis,
    );
    for i in 0..50 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().retries >= 3
        })
        .await
    );
    let s = writer.stats();
    assert_eq!(s.written, 0);
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
            left: 0
        }
    );
    assert_eq!(count(&client, "state", "sensor").await, 50);
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let real = fresh_settings("w_retry_after");
    let fake = FakeInflux::start(influx_url(), Mode::TooMany).await;
    let settings = InfluxSettings {
        url: fake.url.clone(),
        flush_interval_ms: 10,
        ..real.clone()
    };
    let client = InfluxClient::new(&real).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer_with(
        test_config(&settings),
        InfluxClient::new(&settings).expect("client"),
        Precision::Millis,
    );
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
            writer.stats().written == 1
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
    let real = fresh_settings("w_auth");
    let fake = FakeInflux::start(influx_url(), Mode::Unauthorized).await;
    let settings = InfluxSettings {
        url: fake.url.clone(),
        flush_interval_ms: 10,
        ..real.clone()
    };
    let client = InfluxClient::new(&real).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer_with(
        test_config(&settings),
        InfluxClient::new(&settings).expect("client"),
        Precision::Millis,
    );
    for i in 0..3 {
        writer.push(point(i));
    }
    assert!(
        eventually(Duration::from_secs(3), || async {
            writer.stats().auth_error.is_some()
        })
        .await
    );
    let s = writer.stats();
    assert_eq!(s.queued + s.in_flight, 3);
    assert_eq!(s.written, 0);
    fake.set(Mode::Proxy);
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer.stats().written == 3
        })
        .await
    );
    assert_eq!(writer.stats().auth_error, None);
    writer.shutdown(Duration::from_secs(2)).await;
    client.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_batches_are_split() {
    let real = fresh_settings("w_split");
    let fake = FakeInflux::start(influx_url(), Mode::SmallBodies).await;
    let settings = InfluxSettings {
        url: fake.url.clone(),
        flush_interval_ms: 50,
        batch_size: 200,
        ..real.clone()
    };
    let client = InfluxClient::new(&real).expect("client");
    client.create_database().await.expect("create");
    let writer = spawn_writer_with(
        test_config(&settings),
        InfluxClient::new(&settings).expect("client"),
        Precision::Millis,
    );
    for i in 0..200 {
        writer.push(point(i));
    }
    let report = writer.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        report,
        ShutdownReport {
            written: 200,
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
            left: 0
        }
    );
    other.push(point(1));
    let s = other.stats();
    assert_eq!(s.dropped_overflow, 1);
    let json = serde_json::to_value(&s).expect("serialises");
    assert_eq!(json["dropped_overflow"], 1);
    assert!(json.get("auth_error").is_some());
}
