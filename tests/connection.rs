//! A Home Assistant URL that is not Home Assistant: `https` through TLS against a peer that does not
//! speak it. HomeIQ's client against a real Home Assistant and the simulator (cuts, missed pongs, a
//! refused token, SIGTERM, restarts) is in `ha_client.rs`, written once for both.

mod common;

use std::time::Duration;

use common::{HomeIq, HomeIqOptions, Served};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(45);

/// `https` Home Assistant URLs go through TLS (`wss://`) with the one ring provider: a peer that
/// does not speak TLS gives a reported connection error and a retry, never a panic.
#[tokio::test]
async fn wss_connections_use_tls_without_panicking() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"this is not TLS\r\n").await;
        }
    });
    let mut options = HomeIqOptions::from_env();
    options.ha_url = format!("https://127.0.0.1:{port}");
    let homeiq = HomeIq::spawn(options).await;
    let deep = homeiq
        .wait_deep("TLS failure reported", WAIT, |d| {
            d["home_assistant"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("wss://"))
        })
        .await;
    assert_eq!(
        deep["home_assistant"]["websocket_url"],
        format!("wss://127.0.0.1:{port}/api/websocket")
    );
    assert_eq!(deep["status"], "degraded", "{deep}");
    assert!(!homeiq.log().contains("panicked"), "{}", homeiq.log());
    reqwest::get(homeiq.url("/health"))
        .await
        .expect("still serving");
}
