//! Every class of bad input gets a clear error and loses nothing.

use std::time::Duration;

use serde_json::json;
use switchboard::domain::AgentRole;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{Backend, Closed, Ws, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    malformed_frames_get_error_frames_and_the_socket_stays_open,
    oversized_text_and_frames,
    rate_limit_rejects_the_excess_and_recovers,
    handshake_violations_close_with_a_reason,
    agent_feed_refuses_bad_tokens_and_unknown_conversations,
    rest_auth_and_input_errors,
    refused_upgrades_get_an_http_error,
    a_hello_sent_with_the_upgrade_request_is_read,
    a_client_that_closes_gets_the_close_answered,
);

async fn malformed_frames_get_error_frames_and_the_socket_stays_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut ws, _) = app.visitor().await;
    let cases = [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_frame"),
        (r#"{"no_type": true}"#, "invalid_frame"),
        (r#"{"type": "launch_rocket"}"#, "unknown_type"),
        (
            r#"{"type": "message", "text": "missing client id"}"#,
            "invalid_frame",
        ),
        (
            r#"{"type": "message", "client_id": "has spaces", "text": "x"}"#,
            "invalid_frame",
        ),
        (
            r#"{"type": "message", "client_id": "e", "text": "   "}"#,
            "invalid_frame",
        ),
        (
            r#"{"type": "message", "client_id": "f", "text": "a\u0000b"}"#,
            "invalid_frame",
        ),
        (r#"{"type": "typing", "on": "yes"}"#, "invalid_frame"),
        (r#"{"type": "hello", "protocol": 1}"#, "invalid_frame"),
    ];
    for (text, code) in cases {
        ws.send_text(text).await;
        assert_eq!(ws.expect_error().await, code, "for {text}");
    }
    ws.send_raw(WsMessage::binary(vec![1u8, 2, 3])).await;
    assert_eq!(ws.expect_error().await, "invalid_frame");

    ws.send(json!({"type": "message", "client_id": "ok", "text": "after all that"}))
        .await;
    assert_eq!(
        ws.expect("ack").await["seq"],
        1,
        "the connection survived every bad frame and nothing bad was stored"
    );
}

async fn oversized_text_and_frames(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut ws, _) = app.visitor().await;
    let limit = app.settings.websocket.max_text_bytes;
    ws.send(json!({"type": "message", "client_id": "big", "text": "a".repeat(limit + 1)}))
        .await;
    let error = ws.next().await;
    assert_eq!(
        (error["code"].as_str(), error["client_id"].as_str()),
        (Some("too_large"), Some("big"))
    );
    ws.send(json!({"type": "message", "client_id": "fits", "text": "a".repeat(limit)}))
        .await;
    assert_eq!(
        ws.expect("ack").await["seq"],
        1,
        "text at the limit is accepted"
    );

    let huge = "b".repeat(app.settings.websocket.max_frame_bytes + 1);
    ws.send(json!({"type": "message", "client_id": "huge", "text": huge}))
        .await;
    assert_eq!(
        ws.closed().await,
        Closed::Code(1009),
        "a frame over the hard cap closes the connection"
    );
}

async fn rate_limit_rejects_the_excess_and_recovers(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.websocket.messages_per_second = 5;
        s.websocket.message_burst = 3;
    })
    .await;
    let (mut ws, _) = app.visitor().await;
    for i in 0..6 {
        ws.send(json!({"type": "message", "client_id": format!("r{i}"), "text": "spam"}))
            .await;
    }
    let mut acks = 0;
    let mut limited = 0;
    for _ in 0..6 {
        let frame = ws.next().await;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks, 3, "the burst is accepted");
    assert_eq!(limited, 3, "the excess is refused, not stored");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.send(json!({"type": "message", "client_id": "later", "text": "calm now"}))
        .await;
    assert_eq!(
        ws.expect("ack").await["seq"],
        4,
        "refused messages took no seq"
    );
}

async fn handshake_violations_close_with_a_reason(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.websocket.hello_timeout_ms = 300).await;
    let url = app.ws_url("/ws/widget");

    let mut ws = Ws::connect(&url).await;
    ws.send(json!({"type": "hello", "protocol": 2})).await;
    assert_eq!(ws.expect_error().await, "protocol_version");
    assert_eq!(ws.closed().await, Closed::Code(4002));

    let mut ws = Ws::connect(&url).await;
    ws.send(json!({"type": "message", "client_id": "a", "text": "no hello"}))
        .await;
    assert_eq!(ws.expect_error().await, "invalid_frame");
    assert_eq!(ws.closed().await, Closed::Code(4003));

    let mut ws = Ws::connect(&url).await;
    ws.send(json!({"type": "hello", "protocol": 1, "token": "v1.forged.token"}))
        .await;
    assert_eq!(ws.expect_error().await, "unauthorized");
    assert_eq!(ws.closed().await, Closed::Code(4001));

    let mut ws = Ws::connect(&url).await;
    assert_eq!(ws.closed().await, Closed::Code(4003), "no hello in time");
}

async fn agent_feed_refuses_bad_tokens_and_unknown_conversations(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ws = Ws::connect(&app.ws_url("/ws/agent")).await;
    ws.send(json!({"type": "hello", "protocol": 1, "token": "sb_wrong"}))
        .await;
    assert_eq!(ws.expect_error().await, "unauthorized");
    assert_eq!(ws.closed().await, Closed::Code(4001));

    let (_, token) = app.agent("Margaret", AgentRole::Agent).await;
    let mut console = app.console(&token).await;
    console
        .send(json!({"type": "typing", "conversation_id": uuid::Uuid::new_v4().to_string(), "on": true}))
        .await;
    assert_eq!(console.expect_error().await, "not_found");
    console
        .send(json!({"type": "typing", "conversation_id": "nope", "on": true}))
        .await;
    assert_eq!(console.expect_error().await, "invalid_frame");
}

async fn rest_auth_and_input_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, agent) = app.agent("Ken", AgentRole::Agent).await;

    let r = app.get("/api/v1/conversations", None).await;
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.expect("json error");
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(
        app.get("/api/v1/conversations", Some("sb_not_a_token"))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get("/api/v1/agents", Some(&agent)).await.status(),
        403,
        "agents cannot list the team"
    );

    let unknown = uuid::Uuid::new_v4();
    let r = app
        .get(&format!("/api/v1/conversations/{unknown}"), Some(&agent))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["code"],
        "not_found"
    );
    assert_eq!(
        app.get("/api/v1/conversations/not-an-id", Some(&agent))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/api/v1/conversations?limit=0", Some(&agent))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/api/v1/conversations?cursor=bogus", Some(&agent))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/api/v1/conversations?state=sleeping", Some(&agent))
            .await
            .status(),
        400
    );

    let raw = app
        .http
        .put(format!("{}/api/v1/agents/me/status", app.address))
        .bearer_auth(&agent)
        .header("content-type", "application/json")
        .body("{\"status\":")
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), 400);
    assert_eq!(
        raw.json::<serde_json::Value>().await.expect("json")["code"],
        "bad_request"
    );
    assert_eq!(
        app.put(
            "/api/v1/agents/me/status",
            Some(&agent),
            json!({"status": "napping"})
        )
        .await
        .status(),
        400
    );

    let r = app.get("/no/such/route", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["code"],
        "not_found"
    );
}

async fn refused_upgrades_get_an_http_error(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        Ws::try_connect(&app.ws_url("/ws/elsewhere")).await.err(),
        Some(404),
        "an upgrade to a path without a socket"
    );
    let plain = app.get("/ws/widget", None).await;
    assert_eq!(plain.status(), 400, "a plain request to a socket endpoint");
    let body: serde_json::Value = plain.json().await.expect("a JSON error body");
    assert_eq!(body["code"], "bad_request");
    let (mut ws, _) = app.visitor().await;
    ws.send(json!({"type": "message", "client_id": "still", "text": "fine"}))
        .await;
    assert_eq!(ws.expect("ack").await["seq"], 1, "sockets are unaffected");
}

/// A client may send its first frame right behind the upgrade request, before the server's
/// answer: the bytes that arrive with the request are the socket's first frame.
async fn a_hello_sent_with_the_upgrade_request_is_read(backend: Backend) {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    let app = spawn_app(backend).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": null, "last_seq": null});
    let payload = hello.to_string().into_bytes();
    assert!(payload.len() < 126, "one short frame");
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut bytes = format!(
        "GET /ws/widget HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.port
    )
    .into_bytes();
    bytes.extend([0x81, 0x80 | payload.len() as u8]);
    bytes.extend(mask);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    tcp.write_all(&bytes).await.expect("request and frame sent");

    let mut read = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the server answered before closing");
        read.extend_from_slice(&chunk[..n]);
        if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut ws =
        WebSocketStream::from_partially_read(tcp, read[head_end..].to_vec(), Role::Client, None)
            .await;
    let welcome = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("a healthy socket");
    let welcome: serde_json::Value =
        serde_json::from_str(welcome.to_text().expect("text")).expect("JSON");
    assert_eq!(welcome["type"], "welcome");
}

async fn a_client_that_closes_gets_the_close_answered(backend: Backend) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let app = spawn_app(backend).await;
    let (mut ws, _) = app.visitor().await;
    ws.send_raw(WsMessage::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await;
    assert_eq!(
        ws.closed().await,
        Closed::Code(1000),
        "the server answers a close frame with its own"
    );
}
