//! A small InfluxDB 1.x HTTP client: `/ping`, `/write` and `/query` (also the v1-compatible
//! endpoints of InfluxDB 2.x/3).
//!
//! Writes are classified by status code *and* body ([`WriteOutcome`]) so the writer can decide
//! what to keep, resend or drop; queries return typed series and surface statement errors that
//! arrive inside a `200` body. Credentials travel in headers only (`Authorization: Token …` or
//! HTTP basic auth), never in URLs, and every error message is stripped of URLs and secrets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use url::Url;

use crate::config::{InfluxSettings, Secret};
use crate::store::point::Precision;

/// Longest server message kept in errors and outcomes, in bytes.
const MAX_MESSAGE: usize = 2_048;

/// Largest `/query` answer read, in bytes: a bigger one is refused
/// ([`InfluxError::TooLarge`]) instead of held in memory.
pub(crate) const MAX_QUERY_REPLY: usize = 32 << 20;

/// Why a request to InfluxDB failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InfluxError {
    /// The settings cannot make a client (bad URL, TLS set-up).
    #[error("invalid InfluxDB settings: {0}")]
    Config(String),
    /// No HTTP answer: connection refused, DNS, TLS or timeout.
    #[error("cannot reach InfluxDB: {0}")]
    Transport(String),
    /// InfluxDB refused the credentials or their permissions (401/403).
    #[error("InfluxDB refused the credentials: {0}")]
    Unauthorized(String),
    /// Any other unexpected HTTP status.
    #[error("InfluxDB answered HTTP {status}: {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// A statement of a query failed (reported inside a `200` body, or as a `400`).
    #[error("InfluxDB statement {statement_id} failed: {message}")]
    Statement {
        /// Index of the failed statement.
        statement_id: usize,
        /// The server's explanation.
        message: String,
    },
    /// The answer was not the JSON InfluxDB sends.
    #[error("unexpected answer from InfluxDB: {0}")]
    Decode(String),
    /// The answer was larger than HomeIQ reads.
    #[error(
        "InfluxDB's answer is larger than {} MiB; ask for less (fewer records, entities or buckets, or a shorter range)",
        limit >> 20
    )]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
}

/// The result of one `/write` request, classified for the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Everything was written (`204`).
    Written,
    /// Some points were written, `dropped` were refused (`400` with `partial write`).
    Partial {
        /// Points the server dropped (from `dropped=N`, plus lines it could not parse).
        dropped: usize,
        /// The server's explanation.
        message: String,
    },
    /// Nothing was written and resending the same bytes will not help (other `400`/`4xx`).
    Rejected {
        /// The server's explanation.
        message: String,
    },
    /// The credentials were refused (`401`/`403`).
    Unauthorized {
        /// The server's explanation.
        message: String,
    },
    /// The database does not exist (`404`).
    DatabaseNotFound {
        /// The server's explanation.
        message: String,
    },
    /// The body is larger than the server accepts (`413`).
    TooLarge,
    /// Try again later: `429`, `5xx`, timeout or no connection.
    Retryable {
        /// What went wrong.
        message: String,
        /// The HTTP status, `None` when no answer arrived (the server is unreachable).
        status: Option<u16>,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
}

impl WriteOutcome {
    /// Whether everything was written.
    pub fn is_written(&self) -> bool {
        matches!(self, WriteOutcome::Written)
    }
}

/// One series of a statement's result.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Series {
    /// Measurement (or pseudo-measurement such as `databases`) name.
    #[serde(default)]
    pub name: String,
    /// Tags of a `GROUP BY` series.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Column names; `time` first for `SELECT`s.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Rows, one value per column (`time` in epoch milliseconds).
    #[serde(default)]
    pub values: Vec<Vec<Value>>,
}

/// The result of one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementResult {
    /// The statement's index in the query.
    pub statement_id: usize,
    /// Its series (empty when nothing matched).
    pub series: Vec<Series>,
}

/// The result of a query: one entry per statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Statement results, in order.
    pub statements: Vec<StatementResult>,
}

impl QueryResult {
    /// The series of the first statement (most queries have one).
    pub fn first_series(&self) -> &[Series] {
        self.statements.first().map_or(&[], |s| s.series.as_slice())
    }
}

#[derive(Deserialize)]
struct RawQuery {
    #[serde(default)]
    results: Vec<RawStatement>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(default)]
    statement_id: Option<usize>,
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug)]
enum Auth {
    None,
    Token(Secret),
    Basic { user: String, password: Secret },
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    write_url: Url,
    query_url: Url,
    query_url_us: Url,
    database: String,
    auth: Auth,
    gzip: bool,
    timeout: Duration,
    /// Largest query answer read ([`MAX_QUERY_REPLY`]; smaller in tests).
    reply_limit: usize,
}

/// An InfluxDB 1.x HTTP client bound to one database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InfluxClient {
    inner: Arc<Inner>,
}

impl InfluxClient {
    /// [`InfluxClient::new`] refusing query answers over `limit` bytes (tests of what a too
    /// large answer does, without writing 32 MiB of points).
    #[cfg(test)]
    pub(crate) fn with_reply_limit(
        settings: &InfluxSettings,
        limit: usize,
    ) -> Result<Self, InfluxError> {
        let mut client = Self::new(settings)?;
        if let Some(inner) = Arc::get_mut(&mut client.inner) {
            inner.reply_limit = limit;
        }
        Ok(client)
    }

    /// A client for `settings.url` and `settings.database`. Credentials come from
    /// `settings.token` (sent as `Authorization: Token …`), else `username`/`password` (HTTP basic
    /// auth), else from the URL's user info (removed from the URL).
    pub fn new(settings: &InfluxSettings) -> Result<Self, InfluxError> {
        // Idempotent; lets the client work when the application has not installed a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut base = Url::parse(&settings.url)
            .map_err(|e| InfluxError::Config(format!("influxdb.url: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(InfluxError::Config(
                "influxdb.url must be http or https".into(),
            ));
        }
        let url_user = (!base.username().is_empty()).then(|| {
            let user = percent_decode(base.username());
            let password = percent_decode(base.password().unwrap_or(""));
            (user, password)
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let join = |endpoint: &str| {
            base.join(endpoint)
                .map_err(|e| InfluxError::Config(format!("influxdb.url: {e}")))
        };
        let mut write_url = join("write")?;
        write_url
            .query_pairs_mut()
            .append_pair("db", &settings.database);
        if let Some(rp) = settings
            .retention_policy
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            write_url.query_pairs_mut().append_pair("rp", rp);
        }
        let mut query_url = join("query")?;
        query_url
            .query_pairs_mut()
            .append_pair("db", &settings.database)
            .append_pair("epoch", "ms");
        let mut query_url_us = join("query")?;
        query_url_us
            .query_pairs_mut()
            .append_pair("db", &settings.database)
            .append_pair("epoch", "u");

        let auth = match (&settings.token, &settings.username, url_user) {
            (Some(token), _, _) if !token.is_empty() => Auth::Token(token.clone()),
            (_, Some(user), _) if !user.is_empty() => Auth::Basic {
                user: user.clone(),
                password: settings.password.clone().unwrap_or_default(),
            },
            (_, _, Some((user, password))) => Auth::Basic {
                user,
                password: Secret::new(password),
            },
            _ => Auth::None,
        };
        let timeout = settings.timeout();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("homeiq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| InfluxError::Config(error_chain(&e.without_url())))?;
        Ok(InfluxClient {
            inner: Arc::new(Inner {
                http,
                write_url,
                query_url,
                query_url_us,
                database: settings.database.clone(),
                auth,
                gzip: settings.gzip,
                timeout,
                reply_limit: MAX_QUERY_REPLY,
            }),
        })
    }

    /// The database this client writes to.
    pub(crate) fn database(&self) -> &str {
        &self.inner.database
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.inner.auth {
            Auth::None => req,
            Auth::Token(t) => req.header(
                reqwest::header::AUTHORIZATION,
                format!("Token {}", t.expose()),
            ),
            Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
        }
    }

    /// Removes any secret from a message (servers and libraries may echo them).
    fn redact(&self, message: &str) -> String {
        let mut out = crate::config::redact_urls(truncate(message, MAX_MESSAGE)).into_owned();
        let secret = match &self.inner.auth {
            Auth::Token(t) => t.expose(),
            Auth::Basic { password, .. } => password.expose(),
            Auth::None => "",
        };
        if secret.len() >= 3 && out.contains(secret) {
            out = out.replace(secret, "***");
        }
        out
    }

    fn transport_error(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!("timed out after {} s", self.inner.timeout.as_secs())
        } else {
            self.redact(&error_chain(&e.without_url()))
        }
    }

    /// `CREATE DATABASE` for the configured database (a no-op when it exists).
    pub async fn create_database(&self) -> Result<(), InfluxError> {
        let q = format!("CREATE DATABASE {}", quote_ident(&self.inner.database));
        self.query(&q).await.map(|_| ())
    }

    /// `DROP DATABASE` for the configured database (tests and benchmarks clean up with it).
    pub async fn drop_database(&self) -> Result<(), InfluxError> {
        let q = format!("DROP DATABASE {}", quote_ident(&self.inner.database));
        self.query(&q).await.map(|_| ())
    }

    /// Writes a line-protocol body (gzip-compressed first when `influxdb.gzip` is set). Never
    /// fails: transport problems come back as [`WriteOutcome::Retryable`].
    pub async fn write(&self, body: impl Into<Bytes>, precision: Precision) -> WriteOutcome {
        let body: Bytes = body.into();
        let mut url = self.inner.write_url.clone();
        url.query_pairs_mut()
            .append_pair("precision", precision.as_query_param());
        let mut req = self
            .authorize(self.inner.http.post(url))
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.inner.gzip {
            match gzip(&body) {
                Ok(compressed) => {
                    req = req.header(CONTENT_ENCODING, "gzip").body(compressed);
                }
                Err(_) => req = req.body(body),
            }
        } else {
            req = req.body(body);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                return WriteOutcome::Retryable {
                    message: self.transport_error(e),
                    status: None,
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return WriteOutcome::Written;
        }
        let retry_after = retry_after(resp.headers());
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return WriteOutcome::Retryable {
                    message: self.transport_error(e),
                    status: Some(status.as_u16()),
                    retry_after,
                };
            }
        };
        let message = self.redact(&server_message(&text));
        classify_write(status, message, retry_after)
    }

    /// Runs InfluxQL `q` against the configured database (`POST /query`, `epoch=ms`). A
    /// statement error inside a `200` answer is returned as [`InfluxError::Statement`]; values
    /// are never inspected, so a value `"error"` is just a value.
    pub async fn query(&self, q: &str) -> Result<QueryResult, InfluxError> {
        self.query_at(self.inner.query_url.clone(), q).await
    }

    /// [`InfluxClient::query`] with times in epoch microseconds (`epoch=u`), the resolution
    /// HomeIQ writes.
    pub(crate) async fn query_us(&self, q: &str) -> Result<QueryResult, InfluxError> {
        self.query_at(self.inner.query_url_us.clone(), q).await
    }

    /// The body of `resp`, read in chunks and refused once it exceeds `limit` bytes.
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, InfluxError> {
        let too_large = InfluxError::TooLarge { limit };
        let announced = resp.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large);
        }
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| InfluxError::Transport(self.transport_error(e)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    async fn query_at(&self, url: Url, q: &str) -> Result<QueryResult, InfluxError> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .finish();
        let req = self
            .authorize(self.inner.http.post(url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        let resp = req
            .send()
            .await
            .map_err(|e| InfluxError::Transport(self.transport_error(e)))?;
        let status = resp.status();
        let body = self.read_capped(resp, self.inner.reply_limit).await?;
        let text = String::from_utf8_lossy(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(InfluxError::Unauthorized(
                    self.redact(&server_message(&text)),
                ));
            }
            StatusCode::BAD_REQUEST => {
                return Err(InfluxError::Statement {
                    statement_id: 0,
                    message: self.redact(&server_message(&text)),
                });
            }
            s if !s.is_success() => {
                return Err(InfluxError::Status {
                    status: s.as_u16(),
                    message: self.redact(&server_message(&text)),
                });
            }
            _ => {}
        }
        parse_query_body(&text).map_err(|e| match e {
            InfluxError::Statement {
                statement_id,
                message,
            } => InfluxError::Statement {
                statement_id,
                message: self.redact(&message),
            },
            other => other,
        })
    }
}

/// Parses a `/query` JSON answer.
fn parse_query_body(text: &str) -> Result<QueryResult, InfluxError> {
    let raw: RawQuery = serde_json::from_str(text)
        .map_err(|e| InfluxError::Decode(format!("{e}: {}", truncate(text, 200))))?;
    if let Some(message) = raw.error {
        return Err(InfluxError::Statement {
            statement_id: 0,
            message,
        });
    }
    let mut statements = Vec::with_capacity(raw.results.len());
    for (i, r) in raw.results.into_iter().enumerate() {
        let statement_id = r.statement_id.unwrap_or(i);
        if let Some(message) = r.error {
            return Err(InfluxError::Statement {
                statement_id,
                message,
            });
        }
        statements.push(StatementResult {
            statement_id,
            series: r.series,
        });
    }
    Ok(QueryResult { statements })
}

/// Maps a non-2xx write answer to an outcome.
fn classify_write(
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> WriteOutcome {
    match status.as_u16() {
        400 if message.contains("partial write") => WriteOutcome::Partial {
            dropped: dropped_count(&message),
            message,
        },
        401 | 403 => WriteOutcome::Unauthorized { message },
        404 => WriteOutcome::DatabaseNotFound { message },
        413 => WriteOutcome::TooLarge,
        408 | 429 | 500..=599 => WriteOutcome::Retryable {
            message: format!("HTTP {}: {message}", status.as_u16()),
            status: Some(status.as_u16()),
            retry_after,
        },
        _ => WriteOutcome::Rejected {
            message: format!("HTTP {}: {message}", status.as_u16()),
        },
    }
}

/// Points dropped according to a `partial write` message: the `dropped=N` count plus lines the
/// server could not parse (InfluxDB 1.x reports those with `dropped=0`).
fn dropped_count(message: &str) -> usize {
    let counted = message
        .rfind("dropped=")
        .map(|i| {
            message[i + "dropped=".len()..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0usize, |n, d| {
                    n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
                })
        })
        .unwrap_or(0);
    counted + message.matches("unable to parse '").count()
}

/// The explanation in an error body: `{"error": …}` (1.x), `{"message": …}` (2.x) or the text.
fn server_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_str::<Body>(text) {
        Ok(Body { error: Some(e), .. }) => e,
        Ok(Body {
            message: Some(m), ..
        }) => m,
        _ => {
            let t = text.trim();
            if t.is_empty() {
                "(empty answer)".into()
            } else {
                t.to_owned()
            }
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// Quotes an InfluxQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Quotes an InfluxQL string literal.
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::influx::test_support::fresh_settings;

    #[test]
    fn partial_write_counts() {
        assert_eq!(
            dropped_count(
                "partial write: field type conflict: input field \"v\" on measurement \"n\" is type string, already exists as type float dropped=3"
            ),
            3
        );
        assert_eq!(
            dropped_count(
                "partial write: unable to parse 'n v=nan 1': invalid number\nunable to parse 'x': bad dropped=0"
            ),
            2
        );
        assert_eq!(dropped_count("partial write: something"), 0);
    }

    #[test]
    fn classification_by_status_and_body() {
        let c = |s: u16, m: &str| {
            classify_write(StatusCode::from_u16(s).expect("status"), m.to_owned(), None)
        };
        assert!(matches!(
            c(400, "partial write: x dropped=1"),
            WriteOutcome::Partial { dropped: 1, .. }
        ));
        assert!(matches!(
            c(400, "unable to parse 'x': invalid boolean"),
            WriteOutcome::Rejected { .. }
        ));
        assert!(matches!(c(401, "auth"), WriteOutcome::Unauthorized { .. }));
        assert!(matches!(c(403, "auth"), WriteOutcome::Unauthorized { .. }));
        assert!(matches!(
            c(404, "database not found"),
            WriteOutcome::DatabaseNotFound { .. }
        ));
        assert_eq!(c(413, ""), WriteOutcome::TooLarge);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(c(s, "x"), WriteOutcome::Retryable { .. }), "{s}");
        }
        assert!(matches!(c(422, "x"), WriteOutcome::Rejected { .. }));
    }

    #[test]
    fn query_bodies() {
        let ok = parse_query_body(
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","tags":{"a":"b"},"columns":["time","state"],"values":[[1,"error"],[2,null]]}]},{"statement_id":1}]}"#,
        )
        .expect("parses");
        assert_eq!(ok.statements.len(), 2);
        let s = &ok.first_series()[0];
        assert_eq!(s.name, "m");
        assert_eq!(s.tags.get("a").map(String::as_str), Some("b"));
        assert_eq!(s.values[0][1], serde_json::json!("error"));
        assert!(ok.statements[1].series.is_empty());
        let err = parse_query_body(
            r#"{"results":[{"statement_id":0,"series":[]},{"statement_id":1,"error":"database not found: x"}]}"#,
        );
        assert_eq!(
            err,
            Err(InfluxError::Statement {
                statement_id: 1,
                message: "database not found: x".into()
            })
        );
        assert!(matches!(
            parse_query_body(r#"{"error":"bad"}"#),
            Err(InfluxError::Statement { .. })
        ));
        assert!(matches!(
            parse_query_body("<html>"),
            Err(InfluxError::Decode(_))
        ));
    }

    #[test]
    fn secrets_stay_out_of_urls_and_errors() {
        let settings = InfluxSettings {
            url: "http://bob:hunter2secret@127.0.0.1:1/prefix".into(),
            ..InfluxSettings::default()
        };
        let client = InfluxClient::new(&settings).expect("client");
        assert!(!client.inner.write_url.as_str().contains("hunter2"));
        assert_eq!(
            client.inner.write_url.as_str(),
            "http://127.0.0.1:1/prefix/write?db=homeiq"
        );
        assert!(matches!(client.inner.auth, Auth::Basic { .. }));
        assert_eq!(
            client.redact("oops hunter2secret leaked"),
            "oops *** leaked"
        );
        assert!(!format!("{client:?}").contains("hunter2"));
        let token = InfluxSettings {
            token: Some(Secret::new("tok-123456")),
            username: Some("u".into()),
            ..InfluxSettings::default()
        };
        let client = InfluxClient::new(&token).expect("client");
        assert!(matches!(client.inner.auth, Auth::Token(_)));
    }

    #[test]
    fn retry_after_parsing() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&h), None);
    }

    #[tokio::test]
    async fn talks_to_a_real_influxdb() {
        let settings = fresh_settings("client_real");
        let client = InfluxClient::new(&settings).expect("client");
        // Writing before the database exists: 404.
        let outcome = client.write("m v=1 1\n", Precision::Millis).await;
        assert!(
            matches!(outcome, WriteOutcome::DatabaseNotFound { .. }),
            "{outcome:?}"
        );
        client.create_database().await.expect("create");
        client
            .create_database()
            .await
            .expect("create is idempotent");
        assert_eq!(
            client.write("m v=1 1\n", Precision::Millis).await,
            WriteOutcome::Written
        );
        // A type conflict in one point: partial write, the others are kept.
        let outcome = client
            .write("m v=2 2\nm v=\"text\" 3\nm v=4 4\n", Precision::Millis)
            .await;
        assert!(
            matches!(&outcome, WriteOutcome::Partial { dropped: 1, message } if message.contains("field type conflict")),
            "{outcome:?}"
        );
        // Unparseable alone: rejected with the server's explanation.
        let outcome = client.write("m v=inf 5\n", Precision::Millis).await;
        assert!(
            matches!(&outcome, WriteOutcome::Rejected { message } if message.contains("unable to parse")),
            "{outcome:?}"
        );
        // A string value "error" is data, and microsecond precision is honoured.
        assert!(
            client
                .write("e state=\"error\" 1500\n", Precision::Micros)
                .await
                .is_written()
        );
        let r = client
            .query("SELECT count(v) FROM m; SELECT state FROM e")
            .await
            .expect("query");
        assert_eq!(r.statements[0].series[0].values[0][1], serde_json::json!(3));
        assert_eq!(
            r.statements[1].series[0].values[0],
            vec![serde_json::json!(1), serde_json::json!("error")]
        );
        // Statement errors inside a 200 body.
        let err = client
            .query("SELECT * FROM m; SELECT * FROM \"nodb_x\".\"autogen\".\"m\"")
            .await;
        assert!(
            matches!(&err, Err(InfluxError::Statement { statement_id: 1, message }) if message.contains("database not found")),
            "{err:?}"
        );
        // A syntax error (400).
        assert!(matches!(
            client.query("SELEC x").await,
            Err(InfluxError::Statement { .. })
        ));
        client.drop_database().await.expect("drop");
    }

    /// A server answering every request with `answer`, as many times as asked.
    async fn answering(answer: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn.write_all(&answer).await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn query_answers_beyond_the_cap_are_refused_unread() {
        // announced larger than the cap: refused before reading
        let url = answering(
            format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"results\":[",
                MAX_QUERY_REPLY + 1
            )
            .into_bytes(),
        )
        .await;
        let client = InfluxClient::new(&InfluxSettings {
            url,
            ..InfluxSettings::default()
        })
        .expect("client");
        let err = client.query_us("SELECT * FROM m").await;
        assert_eq!(
            err,
            Err(InfluxError::TooLarge {
                limit: MAX_QUERY_REPLY
            })
        );
        assert!(
            err.err()
                .is_some_and(|e| e.to_string().contains("larger than 32 MiB"))
        );
        // chunked, no length announced: refused once the bytes read pass the cap
        let mut answer =
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let piece = vec![b' '; 1 << 20];
        for _ in 0..=(MAX_QUERY_REPLY >> 20) {
            answer.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            answer.extend_from_slice(&piece);
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        let url = answering(answer).await;
        let client = InfluxClient::new(&InfluxSettings {
            url,
            ..InfluxSettings::default()
        })
        .expect("client");
        assert_eq!(
            client.query("SHOW DATABASES").await,
            Err(InfluxError::TooLarge {
                limit: MAX_QUERY_REPLY
            })
        );
        // a small chunked answer is read whole
        let body = r#"{"results":[{"statement_id":0}]}"#;
        let url = answering(
            format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
            .into_bytes(),
        )
        .await;
        let client = InfluxClient::new(&InfluxSettings {
            url,
            ..InfluxSettings::default()
        })
        .expect("client");
        assert_eq!(
            client
                .query("SHOW DATABASES")
                .await
                .map(|r| r.statements.len()),
            Ok(1)
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_retryable_and_never_leaks_the_password() {
        let port = crate::store::influx::test_support::closed_port();
        let settings = InfluxSettings {
            url: format!("http://127.0.0.1:{port}"),
            username: Some("u".into()),
            password: Some(Secret::new("pa55word!")),
            timeout_secs: 2,
            ..InfluxSettings::default()
        };
        let client = InfluxClient::new(&settings).expect("client");
        match client.write("m v=1 1\n", Precision::Millis).await {
            WriteOutcome::Retryable { message, .. } => {
                assert!(!message.contains("pa55word"));
                assert!(!message.contains("127.0.0.1"), "{message}");
            }
            other => panic!("expected retryable, got {other:?}"),
        }
        let err = client
            .query("SHOW DATABASES")
            .await
            .expect_err("unreachable");
        assert!(matches!(err, InfluxError::Transport(_)));
        assert!(!err.to_string().contains("pa55word"));
    }
}
