//! The client against a local HTTP server speaking OpenAI's chat-completions JSON (answers,
//! error objects, 429 with `Retry-After`), on 127.0.0.1 with a port of its own per test. Every
//! failing case checks the error's kind and that the suggestion keeps its template wording.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::guard::{Clock, FAILURES_TO_OPEN, OPEN_FOR};
use super::*;
use crate::config::LlmSettings;
use crate::patterns::DayType;

/// One scripted answer of the fake server.
#[derive(Debug, Clone)]
enum Reply {
    /// A chat completion whose message content is this.
    Content(String),
    /// Any status and body, with an optional `Retry-After`.
    Raw {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Waits this long before answering (a slow model).
    Slow(Duration),
    /// A body of this many bytes, streamed in chunks without a length.
    Chunked(usize),
}

/// A request the fake server received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: Value,
}

#[derive(Debug, Default)]
struct Fake {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

impl Fake {
    fn push(&self, reply: Reply) {
        self.replies.lock().expect("lock").push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// OpenAI's chat-completion object around `content`.
fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
        "system_fingerprint": "fp_test"
    })
    .to_string()
}

/// An answer with OpenAI's error object.
fn error_reply(
    status: u16,
    message: &str,
    kind: &str,
    code: &str,
    retry_after: Option<&str>,
) -> Reply {
    Reply::Raw {
        status,
        body: json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string(),
        retry_after: retry_after.map(str::to_owned),
    }
}

const GOOD: &str = r#"{"title": "Kitchen light on weekday mornings", "explanation": "On most weekdays the kitchen light goes on between 06:40 and 06:55, so HomeIQ can do it for you."}"#;

async fn answer(fake: web::Data<Fake>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    fake.seen.lock().expect("lock").push(Seen {
        path: req.path().to_owned(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = fake
        .replies
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(Reply::Content(GOOD.into()));
    match reply {
        Reply::Content(content) => HttpResponse::Ok()
            .content_type("application/json")
            .body(completion(&content)),
        Reply::Raw {
            status,
            body,
            retry_after,
        } => {
            let mut r =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
            if let Some(after) = retry_after {
                r.insert_header(("retry-after", after));
            }
            r.content_type("application/json").body(body)
        }
        Reply::Slow(wait) => {
            tokio::time::sleep(wait).await;
            HttpResponse::Ok()
                .content_type("application/json")
                .body(completion(GOOD))
        }
        Reply::Chunked(size) => {
            let chunk = web::Bytes::from(vec![b' '; 8 * 1024]);
            let chunks = size.div_ceil(chunk.len());
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            HttpResponse::Ok()
                .content_type("application/json")
                .streaming(stream)
        }
    }
}

/// A fake server on 127.0.0.1; returns its base URL (no path).
async fn serve(fake: Arc<Fake>) -> String {
    let data = web::Data::from(fake);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(answer))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = server.addrs().first().expect("address").port();
    tokio::spawn(server.run());
    format!("http://127.0.0.1:{port}")
}

struct Setup {
    llm: Llm,
    fake: Arc<Fake>,
    clock: Clock,
}

async fn setup_with(path: &str, key: Option<&str>, timeout: Duration, budget: u32) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Arc::new(Fake::default());
    let base = serve(fake.clone()).await;
    let clock = Clock::default();
    let llm = Llm::with_config(
        ClientConfig {
            base_url: format!("{base}{path}"),
            model: "test-model".into(),
            api_key: key.map(Secret::new),
            timeout,
            budget,
        },
        clock.clone(),
    )
    .expect("client");
    Setup { llm, fake, clock }
}

async fn setup() -> Setup {
    setup_with(
        "/v1",
        Some("sk-test-secret-key"),
        Duration::from_secs(5),
        200,
    )
    .await
}

fn request() -> WordingRequest {
    WordingRequest {
        kind: WordingKind::TimeOfDay,
        entities: vec![EntityFacts {
            entity_id: "light.kitchen".into(),
            name: Some("Kitchen ceiling".into()),
            area: Some("Kitchen".into()),
            domain: "light".into(),
            role: EntityRole::Action,
            state: Some("on".into()),
        }],
        window: Some(LocalWindow {
            start: "06:40".into(),
            end: "06:55".into(),
        }),
        delay_seconds: None,
        day_type: Some(DayType::Weekday),
        occurrences: Some(23),
        out_of: Some(30),
        confidence: Some(0.77),
        title: "Turn on Kitchen ceiling at 06:45 on weekdays".into(),
        explanation: "On 23 of the last 30 weekdays the kitchen light went on between 06:40 and \
                      06:55."
            .into(),
    }
}

/// Rewords `request()` through the fallback and checks the template was kept for `kind`.
async fn falls_back(llm: &Llm, kind: &str) -> LlmError {
    let req = request();
    let worded = llm.reword_or_template(&req).await;
    assert_eq!(
        worded.wording,
        req.template(),
        "the suggestion keeps its wording"
    );
    assert_eq!(worded.source, WordingSource::Template);
    let error = worded.error.expect("an error");
    assert_eq!(error.kind(), kind, "{error}");
    error
}

fn server_error() -> Reply {
    error_reply(
        500,
        "The server had an error while processing your request.",
        "server_error",
        "internal_error",
        None,
    )
}

#[tokio::test]
async fn a_good_answer_rewords_and_the_request_is_chat_completions() {
    let s = setup().await;
    let worded = s.llm.reword_or_template(&request()).await;
    assert_eq!(worded.source, WordingSource::Llm);
    assert_eq!(worded.error, None);
    assert_eq!(worded.wording.title, "Kitchen light on weekday mornings");
    assert!(worded.wording.explanation.starts_with("On most weekdays"));

    let seen = s.fake.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path, "/v1/chat/completions");
    assert_eq!(
        req.authorization.as_deref(),
        Some("Bearer sk-test-secret-key")
    );
    let body = &req.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], false);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    assert!(body["temperature"].as_f64().is_some_and(|t| t <= 0.3));
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["role"], "user");
    let facts: Value = serde_json::from_str(body["messages"][1]["content"].as_str().expect("text"))
        .expect("facts are JSON");
    assert_eq!(facts["entities"][0]["name"], "Kitchen ceiling");
    assert_eq!(facts["window"], json!({"start": "06:40", "end": "06:55"}));

    let status = s.llm.status();
    assert!(status.enabled);
    assert_eq!(
        (
            status.requests_last_24h,
            status.budget_left,
            status.breaker,
            status.counters.worded
        ),
        (1, 199, BreakerState::Closed, 1)
    );
    assert!(status.last_success_at.is_some());
    assert_eq!(status.health().verdict, Verdict::Ok);
}

#[tokio::test]
async fn rewording_can_run_on_any_task() {
    fn send<T: Send + 'static>(_: &T) {}
    let s = setup().await;
    let llm = s.llm.clone();
    let task = async move { llm.reword_or_template(&request()).await };
    send(&task);
    let worded = tokio::spawn(task).await.expect("joined");
    assert_eq!(worded.source, WordingSource::Llm);
}

#[tokio::test]
async fn a_base_url_without_path_gets_v1_and_no_key_sends_no_authorization() {
    let s = setup_with("", None, Duration::from_secs(5), 10).await;
    s.llm.reword(&request()).await.expect("reworded");
    let seen = s.fake.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].authorization, None);
    assert_eq!(
        chat_url("https://example.test/openai/v1/").map(|u| u.to_string()),
        Ok("https://example.test/openai/v1/chat/completions".into())
    );
    assert_eq!(
        chat_url("http://ollama.local:11434").map(|u| u.to_string()),
        Ok("http://ollama.local:11434/v1/chat/completions".into())
    );
}

#[tokio::test]
async fn an_answer_in_json_fences_is_read() {
    let s = setup().await;
    s.fake.push(Reply::Content(format!("```json\n{GOOD}\n```")));
    let w = s.llm.reword(&request()).await.expect("reworded");
    assert_eq!(w.title, "Kitchen light on weekday mornings");
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_shown() {
    let s = setup().await;
    s.fake.push(error_reply(
        401,
        "Incorrect API key provided: sk-test-****-key. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
        None,
    ));
    let error = falls_back(&s.llm, "unauthorized").await;
    assert!(matches!(error, LlmError::Unauthorized { status: 401, .. }));
    assert!(error.to_string().contains("invalid_api_key"), "{error}");
    let status = s.llm.status();
    let shown = format!(
        "{error} {:?} {} {:?}",
        status,
        serde_json::to_string(&status).expect("json"),
        s.llm
    );
    assert!(!shown.contains("sk-test-secret-key"), "{shown}");
    assert_eq!(status.consecutive_failures, 1);
    assert!(status.last_error.is_some_and(|e| e.contains("HTTP 401")));
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_until_then() {
    let s = setup().await;
    s.fake.push(error_reply(
        429,
        "Rate limit reached for requests",
        "requests",
        "rate_limit_exceeded",
        Some("30"),
    ));
    let error = falls_back(&s.llm, "rate_limited").await;
    assert!(
        matches!(error, LlmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{error:?}"
    );
    // no request before the server's time
    let error = falls_back(&s.llm, "circuit_open").await;
    assert!(
        matches!(error, LlmError::CircuitOpen { retry_in } if retry_in <= Duration::from_secs(30))
    );
    assert_eq!(s.fake.seen().len(), 1);
    let status = s.llm.status();
    assert_eq!(status.breaker, BreakerState::Open);
    assert_eq!(status.consecutive_failures, 0, "a 429 is not a failure");
    assert_eq!(status.breaker_retry_in_seconds, Some(30));
    assert_eq!(status.health().verdict, Verdict::Degraded);

    s.clock.advance(Duration::from_secs(30));
    assert_eq!(s.llm.status().breaker, BreakerState::HalfOpen);
    s.llm.reword(&request()).await.expect("after the pause");
    assert_eq!(s.fake.seen().len(), 2);
    assert_eq!(s.llm.status().breaker, BreakerState::Closed);
}

#[tokio::test]
async fn a_429_without_retry_after_pauses_a_minute() {
    let s = setup().await;
    s.fake.push(error_reply(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
        None,
    ));
    let error = falls_back(&s.llm, "rate_limited").await;
    assert!(error.to_string().contains("insufficient_quota"), "{error}");
    assert_eq!(
        s.llm.status().breaker_retry_in_seconds,
        Some(guard::RATE_LIMITED_FOR.as_secs())
    );
}

#[tokio::test]
async fn server_errors_open_the_breaker_and_a_probe_closes_it() {
    let s = setup().await;
    for _ in 0..FAILURES_TO_OPEN {
        s.fake.push(server_error());
        let error = falls_back(&s.llm, "http").await;
        assert!(matches!(error, LlmError::Http { status: 500, .. }));
    }
    let error = falls_back(&s.llm, "circuit_open").await;
    assert!(matches!(
        error,
        LlmError::CircuitOpen { retry_in } if retry_in <= OPEN_FOR && retry_in > OPEN_FOR / 2
    ));
    assert_eq!(s.fake.seen().len(), FAILURES_TO_OPEN as usize, "not sent");
    let status = s.llm.status();
    assert_eq!(status.breaker, BreakerState::Open);
    assert_eq!(status.counters.refused_breaker, 1);
    assert!(
        status
            .health()
            .reasons
            .iter()
            .any(|r| r.contains("HTTP 500"))
    );

    // half-open: the probe fails, the breaker opens again for the full time
    s.clock.advance(OPEN_FOR);
    s.fake.push(server_error());
    falls_back(&s.llm, "http").await;
    let status = s.llm.status();
    assert_eq!(status.breaker, BreakerState::Open);
    assert_eq!(status.breaker_retry_in_seconds, Some(OPEN_FOR.as_secs()));

    // half-open again: the probe succeeds and the breaker closes
    s.clock.advance(OPEN_FOR);
    s.llm.reword(&request()).await.expect("the probe");
    let status = s.llm.status();
    assert_eq!(
        (status.breaker, status.consecutive_failures),
        (BreakerState::Closed, 0)
    );
    s.llm.reword(&request()).await.expect("closed again");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let timeout = Duration::from_millis(300);
    let s = setup_with("/v1", None, timeout, 10).await;
    s.fake.push(Reply::Slow(Duration::from_secs(20)));
    let started = Instant::now();
    let error = falls_back(&s.llm, "timeout").await;
    assert!(matches!(error, LlmError::Timeout(d) if d == timeout));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(s.llm.status().consecutive_failures, 1);
}

#[tokio::test]
async fn unusable_answers_are_malformed() {
    let s = setup().await;
    let replies = [
        Reply::Raw {
            status: 200,
            body: "this is not json".into(),
            retry_after: None,
        },
        Reply::Raw {
            status: 200,
            body: json!({"object": "chat.completion", "choices": []}).to_string(),
            retry_after: None,
        },
        Reply::Content(r#"{"title": "Only a title"}"#.into()),
        Reply::Content("I would suggest turning on the light.".into()),
        Reply::Content(format!(
            r#"{{"title": "{}", "explanation": "x"}}"#,
            "t".repeat(500)
        )),
        // a whole completion larger than the cap, its length announced
        Reply::Content(format!(
            r#"{{"title": "t", "explanation": "{}"}}"#,
            "e".repeat(MAX_ANSWER_BYTES)
        )),
        // streamed without a length
        Reply::Chunked(4 * MAX_ANSWER_BYTES),
    ];
    let count = replies.len();
    for reply in replies {
        s.fake.push(reply.clone());
        let error = falls_back(&s.llm, "malformed").await;
        assert!(
            matches!(error, LlmError::Malformed(_)),
            "{reply:?}: {error}"
        );
        // keep the breaker closed to try every answer
        s.llm.reword(&request()).await.expect("a good answer");
    }
    let status = s.llm.status();
    assert_eq!(status.counters.malformed, count as u64);
    assert_eq!(status.breaker, BreakerState::Closed);
}

#[tokio::test]
async fn the_daily_budget_is_never_exceeded() {
    let s = setup_with("/v1", None, Duration::from_secs(5), 2).await;
    for _ in 0..2 {
        s.llm.reword(&request()).await.expect("within budget");
    }
    let error = falls_back(&s.llm, "budget_exhausted").await;
    assert!(matches!(
        error,
        LlmError::BudgetExhausted { budget: 2, retry_in } if retry_in <= guard::BUDGET_WINDOW
    ));
    assert_eq!(s.fake.seen().len(), 2);
    let status = s.llm.status();
    assert_eq!((status.requests_last_24h, status.budget_left), (2, 0));
    assert_eq!(status.breaker, BreakerState::Closed, "not a failure");
    assert_eq!(status.health().warnings.len(), 1);
    s.clock.advance(guard::BUDGET_WINDOW);
    s.llm.reword(&request()).await.expect("a day later");
}

#[tokio::test]
async fn a_server_without_response_format_is_asked_again_without_it() {
    let s = setup().await;
    s.fake.push(error_reply(
        400,
        "Invalid parameter: 'response_format' of type 'json_object' is not supported with \
             this model.",
        "invalid_request_error",
        "null",
        None,
    ));
    s.llm.reword(&request()).await.expect("asked again");
    s.llm.reword(&request()).await.expect("and later");
    let seen = s.fake.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].body.get("response_format").is_some());
    assert!(seen[1].body.get("response_format").is_none());
    assert!(seen[2].body.get("response_format").is_none());
    assert_eq!(s.llm.status().requests_last_24h, 3);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let llm = Llm::with_config(
        ClientConfig {
            base_url: format!("http://user:pw-secret@127.0.0.1:{port}/v1"),
            model: "m".into(),
            api_key: None,
            timeout: Duration::from_secs(5),
            budget: 10,
        },
        Clock::default(),
    )
    .expect("client");
    let error = falls_back(&llm, "transport").await;
    assert!(!error.to_string().contains("pw-secret"), "{error}");
}

#[tokio::test]
async fn the_client_follows_the_settings() {
    let mut settings = Settings::default();
    let off = Llm::from_settings(&settings);
    assert!(!off.enabled());
    assert_eq!(falls_back(&off, "disabled").await, LlmError::Disabled);
    let status = off.status();
    assert!(!status.enabled);
    assert_eq!(status.health().verdict, Verdict::Ok);

    settings.llm = LlmSettings {
        enabled: true,
        base_url: "http://127.0.0.1:11434/v1".into(),
        model: " llama3.2 ".into(),
        api_key: Some(Secret::new("sk-from-settings")),
        timeout_seconds: 7,
        daily_request_budget: 50,
    };
    let on = Llm::from_settings(&settings);
    assert!(on.enabled());
    let status = on.status();
    assert_eq!(
        (status.model.as_str(), status.daily_request_budget),
        ("llama3.2", 50)
    );
    assert!(!format!("{on:?}").contains("sk-from-settings"));
}
