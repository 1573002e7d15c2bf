//! The live paths: visitor ↔ agent, fan-out, ordering, slow consumers, heartbeats.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, Closed, Ws, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    visitor_agent_round_trip,
    other_tabs_see_messages_but_the_sender_gets_an_ack,
    seq_strictly_increases_with_concurrent_senders,
    slow_consumer_is_closed_and_others_are_unaffected,
    silent_client_is_dropped_after_the_heartbeat_timeout,
    visitors_never_see_each_others_conversations,
);

async fn visitor_agent_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.agent("Ada", AgentRole::Agent).await;
    let mut console = app.console(&token).await;

    let (mut widget, welcome) = app.visitor().await;
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(welcome["state"], "bot");
    let conversation = welcome["conversation_id"]
        .as_str()
        .expect("conversation id")
        .to_string();
    let created = console.expect("conversation").await;
    assert_eq!(created["event"], "created");
    assert_eq!(created["conversation"]["id"], conversation.as_str());

    widget
        .send(json!({"type": "message", "client_id": "m1", "text": "My driver took a wrong turn"}))
        .await;
    let ack = widget.expect("ack").await;
    assert_eq!(ack, json!({"type": "ack", "client_id": "m1", "seq": 1}));
    let seen = console.expect("message").await;
    assert_eq!(seen["conversation_id"], conversation.as_str());
    assert_eq!(seen["author"], "visitor");
    assert_eq!(seen["text"], "My driver took a wrong turn");
    assert_eq!(seen["seq"], 1);

    let path = format!("/api/v1/conversations/{conversation}");
    let forbidden = app
        .post(
            &format!("{path}/messages"),
            Some(&token),
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(forbidden.status(), 403, "replying needs a claim first");
    let claimed = app
        .post(&format!("{path}/claim"), Some(&token), json!({}))
        .await;
    assert_eq!(claimed.status(), 200);
    assert_eq!(widget.expect("state").await["state"], "assigned");

    let reply = app
        .post(
            &format!("{path}/messages"),
            Some(&token),
            json!({"text": "Sorry about that, let me check", "client_id": "a1"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let stored: serde_json::Value = reply.json().await.expect("message body");
    assert_eq!(stored["seq"], 2);
    let delivered = widget.expect("message").await;
    assert_eq!(delivered["author"], "agent");
    assert_eq!(delivered["text"], "Sorry about that, let me check");
    assert_eq!(delivered["seq"], 2);
    assert!(
        delivered["sent_at"]
            .as_str()
            .is_some_and(|t| t.contains('T')),
        "RFC 3339 time: {delivered}"
    );

    widget.send(json!({"type": "typing", "on": true})).await;
    let typing = console.expect("typing").await;
    assert_eq!(typing["author"], "visitor");
    assert_eq!(typing["on"], true);

    let resolved = app
        .post(&format!("{path}/resolve"), Some(&token), json!({}))
        .await;
    assert_eq!(resolved.status(), 200);
    assert_eq!(widget.expect("state").await["state"], "resolved");
}

async fn other_tabs_see_messages_but_the_sender_gets_an_ack(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut first, welcome) = app.visitor().await;
    let token = welcome["token"].as_str().expect("token");
    let (mut second, again) = app.resume(token, None).await;
    assert_eq!(again["conversation_id"], welcome["conversation_id"]);

    first
        .send(json!({"type": "message", "client_id": "x", "text": "hello from tab one"}))
        .await;
    assert_eq!(first.expect("ack").await["seq"], 1);
    let other = second.expect("message").await;
    assert_eq!(other["text"], "hello from tab one");
    assert_eq!(other["client_id"], "x");
    assert!(
        first.try_next(Duration::from_millis(300)).await.is_none(),
        "the sender does not get its own message back"
    );
}

async fn seq_strictly_increases_with_concurrent_senders(backend: Backend) {
    const SENDERS: usize = 8;
    const EACH: usize = 25;
    let app = spawn_app(backend).await;
    let (mut observer, welcome) = app.visitor().await;
    let token = welcome["token"].as_str().expect("token").to_string();

    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let (mut tab, _) = app.resume(&token, Some(i64::MAX)).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                tab.send(json!({"type": "message", "client_id": format!("s{s}-{i}"), "text": format!("sender {s} message {i}")})).await;
            }
            let mut seqs = Vec::new();
            while seqs.len() < EACH {
                let frame = tab.next().await;
                if frame["type"] == "ack" {
                    seqs.push(frame["seq"].as_i64().expect("ack seq"));
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.expect("sender task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's acks rise: {seqs:?}"
        );
        all.extend(seqs);
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        SENDERS * EACH,
        "every message got its own seq"
    );
    assert_eq!(
        all.iter().copied().max(),
        Some((SENDERS * EACH) as i64),
        "no gaps"
    );

    let seen: Vec<i64> = observer
        .messages(SENDERS * EACH)
        .await
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seen,
        (1..=(SENDERS * EACH) as i64).collect::<Vec<_>>(),
        "live delivery is in seq order without gaps"
    );
}

async fn slow_consumer_is_closed_and_others_are_unaffected(backend: Backend) {
    // Well over what loopback socket buffers absorb (about 4 MiB), so the slow tab backs up.
    const MESSAGES: usize = 3000;
    let app = spawn_app_with(backend, |s| {
        s.websocket.outbound_queue = 64;
        s.websocket.write_timeout_ms = 500;
    })
    .await;
    let (_, token) = app.agent("Grace", AgentRole::Admin).await;
    let (mut fast, welcome) = app.visitor().await;
    let visitor_token = welcome["token"].as_str().expect("token").to_string();
    let conversation = welcome["conversation_id"].as_str().expect("id").to_string();

    let mut slow = Ws::connect_small_buffer(app.port, "/ws/widget").await;
    slow.send(json!({"type": "hello", "protocol": 1, "token": visitor_token, "last_seq": null}))
        .await;

    let reader = tokio::spawn(async move {
        let got = fast.messages(MESSAGES).await;
        got.len()
    });
    let text = "x".repeat(3000);
    let path = format!("/api/v1/conversations/{conversation}/messages");
    for i in 0..MESSAGES {
        let r = app
            .post(
                &path,
                Some(&token),
                json!({"text": text, "client_id": format!("bulk-{i}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    assert_eq!(
        reader.await.expect("fast reader"),
        MESSAGES,
        "the fast tab got every message"
    );
    assert!(
        app.metric("switchboard_ws_closes_total{reason=\"slow_consumer\"}")
            .await
            >= 1.0,
        "the slow tab was closed as a slow consumer"
    );

    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.try_next_raw()).await {
            Ok(Some(true)) => received += 1,
            Ok(Some(false)) => continue,
            Ok(None) | Err(_) => break received,
        }
    };
    assert!(
        ended < MESSAGES,
        "the slow tab was cut off before getting everything ({ended})"
    );
}

async fn silent_client_is_dropped_after_the_heartbeat_timeout(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.websocket.heartbeat_interval_ms = 100;
        s.websocket.client_timeout_ms = 300;
    })
    .await;
    let (mut widget, _) = app.visitor().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(widget.closed().await, Closed::Code(4008));
    assert_eq!(
        app.metric("switchboard_ws_closes_total{reason=\"heartbeat_timeout\"}")
            .await,
        1.0
    );

    let (mut live, _) = app.visitor().await;
    for _ in 0..6 {
        assert!(live.try_next(Duration::from_millis(150)).await.is_none());
    }
    live.send(json!({"type": "message", "client_id": "still-here", "text": "still here"}))
        .await;
    assert_eq!(
        live.expect("ack").await["client_id"],
        "still-here",
        "a client that answers pings stays connected"
    );
}

async fn visitors_never_see_each_others_conversations(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut alice, a) = app.visitor().await;
    let (mut bob, b) = app.visitor().await;
    assert_ne!(a["conversation_id"], b["conversation_id"]);
    assert_ne!(a["token"], b["token"]);

    bob.send(json!({"type": "message", "client_id": "b1", "text": "bob's secret"}))
        .await;
    bob.expect("ack").await;
    assert!(
        alice.try_next(Duration::from_millis(300)).await.is_none(),
        "alice hears nothing of bob"
    );

    let (mut alice_again, again) = app.resume(a["token"].as_str().expect("token"), None).await;
    assert_eq!(
        again["conversation_id"], a["conversation_id"],
        "a token only ever resumes its own conversation"
    );
    assert!(
        alice_again
            .try_next(Duration::from_millis(300))
            .await
            .is_none(),
        "no replay of bob's messages"
    );
    drop(alice);

    let forged = {
        let alice_token = a["token"].as_str().expect("token");
        let bob_token = b["token"].as_str().expect("token");
        let (prefix_payload, _) = bob_token.rsplit_once('.').expect("signed token");
        let (_, alice_sig) = alice_token.rsplit_once('.').expect("signed token");
        format!("{prefix_payload}.{alice_sig}")
    };
    let mut thief = Ws::connect(&app.ws_url("/ws/widget")).await;
    thief
        .send(json!({"type": "hello", "protocol": 1, "token": forged}))
        .await;
    assert_eq!(thief.expect_error().await, "unauthorized");
    assert_eq!(thief.closed().await, Closed::Code(4001));
}
