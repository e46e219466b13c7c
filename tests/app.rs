//! The in-process test application ([`common::app`]) itself: the real `Application` records the
//! built-in simulator into embedded storage, tells its port without any log, and stops within
//! the shutdown budget, closing its SQLite files.

mod common;

use std::time::Duration;

use common::Served;
use common::app::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_app_records_the_simulator_and_stops_within_the_budget() {
    let app = spawn_app().await;
    assert_ne!(app.port, 0);
    let deep = app.wait_synced().await;
    assert_eq!(deep["storage"]["backend"], "embedded", "{deep}");
    app.wait_deep("points written", Duration::from_secs(30), |d| {
        d["storage"]["written"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let entities = app.get_json("/api/v1/entities?limit=1").await;
    assert!(entities["total"].as_u64().unwrap_or(0) > 0, "{entities}");

    let data_dir = app.data_dir.clone();
    let took = app.stop().await;
    assert!(
        took < homeiq::app::SHUTDOWN_BUDGET,
        "shutdown took {took:?}"
    );
    // its SQLite files are closed: the write-ahead log was checkpointed and removed
    let wal = data_dir.join("homeiq.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} is left",
        wal.display()
    );
}

/// An open live stream ends when the application stops (the response ends properly, it is not
/// cut off by the server's shutdown timeout), so it does not hold the shutdown up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_live_stream_ends_at_shutdown() {
    let app = spawn_app().await;
    let mut stream = app
        .client()
        .get(app.url("/api/v1/stream"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    let hello = stream.chunk().await.expect("hello").unwrap_or_default();
    assert!(hello.starts_with(b"event: hello"), "{hello:?}");

    let took = app.stop().await;
    // whatever was under way arrives, then the end of the response
    loop {
        match stream.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the stream was cut off instead of ending: {e}"),
        }
    }
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
}
