//! Load-generator benchmark: the rate `homeiq simulate --rate N` really delivers to a WebSocket
//! client.
//!
//! `cargo bench --bench simulate_rate` (optional `RATE=`, default 100,000 changes/s; `SECS=`,
//! default 10; `PROFILE=small|medium|large`, default large). Starts the simulator in-process in
//! load-generator mode, connects one raw WebSocket client (auth, `coalesce_messages`,
//! `subscribe_events state_changed`) and counts the `state_changed` messages it receives, after a
//! one-second warm-up. Prints the generator's and the client's achieved rates and the frames'
//! average size; exits non-zero if the client got less than 95 % of the target or was dropped.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use homeiq::simulate::{Profile, SimulatorOptions, spawn};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rate: u64 = env_or("RATE", 100_000);
    let secs: f64 = env_or("SECS", 10.0);
    let profile = match std::env::var("PROFILE").as_deref() {
        Ok("small") => Profile::Small,
        Ok("medium") => Profile::Medium,
        _ => Profile::Large,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(run(rate, secs, profile));
    if !ok {
        std::process::exit(1);
    }
}

async fn run(rate: u64, secs: f64, profile: Profile) -> bool {
    let sim = spawn(SimulatorOptions {
        port: 0,
        rate: Some(rate),
        profile,
        seed: 7,
        report_secs: 3_600.0,
        ..SimulatorOptions::default()
    })
    .expect("simulator");
    let url = format!("ws://127.0.0.1:{}/api/websocket", sim.port);
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("connect");
    let _required = ws.next().await;
    let commands = [
        json!({"type": "auth", "access_token": sim.token}),
        json!({"id": 1, "type": "supported_features", "features": {"coalesce_messages": 1}}),
        json!({"id": 2, "type": "subscribe_events", "event_type": "state_changed"}),
    ];
    for c in commands {
        ws.send(Message::Text(c.to_string().into()))
            .await
            .expect("send");
    }
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let mut measuring: Option<(Instant, u64)> = None;
    let (mut events, mut frames, mut bytes) = (0u64, 0u64, 0u64);
    let mut dropped = false;
    loop {
        if measuring.is_none() && start.elapsed() >= warmup {
            measuring = Some((Instant::now(), events));
            frames = 0;
            bytes = 0;
        }
        if let Some((t0, _)) = measuring
            && t0.elapsed().as_secs_f64() >= secs
        {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let t = t.as_str();
                events += t.matches("\"event_type\":\"state_changed\"").count() as u64;
                frames += 1;
                bytes += t.len() as u64;
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                dropped = true;
                break;
            }
        }
    }
    let (t0, events0) = measuring.unwrap_or((start, 0));
    let elapsed = t0.elapsed().as_secs_f64();
    let produced = sim.load.produced.load(std::sync::atomic::Ordering::Relaxed);
    let received = events - events0;
    let client_rate = received as f64 / elapsed;
    let generator_rate = produced as f64 / start.elapsed().as_secs_f64();
    println!(
        "simulate_rate: target {rate}/s, generator {generator_rate:.0}/s, client received \
         {client_rate:.0}/s ({received} in {elapsed:.1} s), {frames} frames of {:.0} KiB on average \
         ({:.0} MiB/s){}",
        bytes as f64 / frames.max(1) as f64 / 1024.0,
        bytes as f64 / elapsed / (1 << 20) as f64,
        if dropped {
            ", CLIENT DROPPED OR STALLED"
        } else {
            ""
        }
    );
    sim.shutdown().await;
    !dropped && client_rate >= rate as f64 * 0.95
}
