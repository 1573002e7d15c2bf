//! Graceful drain: readiness off, upgrades refused, sockets closed with 1001, exit in time,
//! nothing lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, Closed, FRAME_WAIT, TestDatabase, Ws, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    draining_closes_sockets_and_refuses_new_ones,
    sigterm_drains_the_binary_and_keeps_every_message
);

async fn draining_closes_sockets_and_refuses_new_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut widget, _) = app.visitor().await;
    let (_, token) = app.agent("Drainer", AgentRole::Agent).await;
    let mut console = app.console(&token).await;
    assert_eq!(app.get("/ready", None).await.status(), 200);

    app.state.drain.start();
    assert_eq!(widget.closed().await, Closed::Code(1001));
    assert_eq!(console.closed().await, Closed::Code(1001));
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        ready.json::<serde_json::Value>().await.expect("json")["status"],
        "draining"
    );
    let refused = tokio::time::timeout(FRAME_WAIT, Ws::try_connect(&app.ws_url("/ws/widget")))
        .await
        .expect("a draining server answers an upgrade in time");
    assert_eq!(refused.err(), Some(503), "no new upgrades while draining");
    assert_eq!(
        app.get("/health", None).await.status(),
        200,
        "still alive while draining"
    );
    assert_eq!(
        app.metric("switchboard_ws_closes_total{reason=\"going_away\"}")
            .await,
        2.0
    );

    let started = Instant::now();
    let stopping = switchboard::drain::shutdown(&app.state, app.handle(), Duration::from_secs(5));
    tokio::time::timeout(FRAME_WAIT, stopping)
        .await
        .expect("the drain ends by its deadline");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "with every socket closed the stop is immediate"
    );
    assert!(
        app.http
            .get(format!("{}/health", app.address))
            .send()
            .await
            .is_err(),
        "the server has stopped"
    );
}

async fn sigterm_drains_the_binary_and_keeps_every_message(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_SERVER__PORT", port.to_string())
        .env("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_SECS", "5")
        .env("SWITCHBOARD_LOG__LEVEL", "warn")
        .env("SWITCHBOARD_AI__ENABLED", "false")
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let ready = format!("http://127.0.0.1:{port}/ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut widget = Ws::connect(&format!("ws://127.0.0.1:{port}/ws/widget")).await;
    widget.send(json!({"type": "hello", "protocol": 1})).await;
    let welcome = widget.expect("welcome").await;
    for i in 0..20 {
        widget.send(json!({"type": "message", "client_id": format!("k{i}"), "text": format!("message {i}")})).await;
    }
    let mut acked = std::collections::BTreeSet::new();
    let first = widget.expect("ack").await;
    acked.insert(first["client_id"].as_str().expect("client id").to_string());
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let closed = loop {
        match widget.next_or_close().await {
            Ok(frame) if frame["type"] == "ack" => {
                acked.insert(frame["client_id"].as_str().expect("client id").to_string());
            }
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert_eq!(closed, Closed::Code(1001));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on the server") {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(8),
            "the server exits within its drain deadline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "a drained server exits cleanly: {status:?}"
    );

    let store = switchboard::store::Store::connect(&db.url, 1)
        .await
        .expect("connect");
    let id = welcome["conversation_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let stored: std::collections::BTreeSet<String> = store
        .messages_after(id, 0, 100)
        .await
        .expect("messages")
        .into_iter()
        .filter_map(|m| m.client_id)
        .collect();
    assert_eq!(
        stored, acked,
        "every message the server took in was stored and acknowledged, none half-way"
    );
}
