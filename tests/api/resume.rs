//! Nothing is lost: resume after a disconnect, after a server restart, and idempotent resends.

use serde_json::json;
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    resume_after_disconnect_replays_what_was_missed_in_order,
    resume_after_a_server_restart_loses_nothing,
    a_resend_with_the_same_client_id_is_stored_once,
);

async fn resume_after_disconnect_replays_what_was_missed_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.agent("Linus", AgentRole::Admin).await;
    let (mut widget, welcome) = app.visitor().await;
    let visitor = welcome["token"].as_str().expect("token").to_string();
    let conversation = welcome["conversation_id"].as_str().expect("id").to_string();

    widget
        .send(json!({"type": "message", "client_id": "v1", "text": "first"}))
        .await;
    assert_eq!(widget.expect("ack").await["seq"], 1);
    drop(widget);

    let path = format!("/api/v1/conversations/{conversation}/messages");
    for i in 0..5 {
        let r = app
            .post(
                &path,
                Some(&token),
                json!({"text": format!("while you were away {i}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }

    let (mut back, again) = app.resume(&visitor, Some(1)).await;
    assert_eq!(again["conversation_id"], conversation.as_str());
    let replayed = back.messages(5).await;
    let seqs: Vec<i64> = replayed
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
    assert_eq!(replayed[0]["text"], "while you were away 0");
    assert_eq!(replayed[4]["author"], "agent");

    let (mut fresh_tab, _) = app.resume(&visitor, None).await;
    let everything = fresh_tab.messages(6).await;
    assert_eq!(
        everything[0]["text"], "first",
        "last_seq null replays the whole conversation"
    );

    let r = app
        .post(&path, Some(&token), json!({"text": "live again"}))
        .await;
    assert_eq!(r.status(), 201);
    let live = back.expect("message").await;
    assert_eq!(
        (live["seq"].as_i64(), live["text"].as_str()),
        (Some(7), Some("live again")),
        "live delivery continues after the replay"
    );
}

async fn resume_after_a_server_restart_loses_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut widget, welcome) = app.visitor().await;
    let visitor = welcome["token"].as_str().expect("token").to_string();
    for i in 1..=3 {
        widget.send(json!({"type": "message", "client_id": format!("c{i}"), "text": format!("before restart {i}")})).await;
        assert_eq!(widget.expect("ack").await["seq"], i);
    }
    drop(widget);

    let app = app.restart().await;
    let (mut widget, again) = app.resume(&visitor, Some(0)).await;
    assert_eq!(
        again["conversation_id"], welcome["conversation_id"],
        "the signing key survives the restart"
    );
    let replayed = widget.messages(3).await;
    let texts: Vec<&str> = replayed
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        vec!["before restart 1", "before restart 2", "before restart 3"]
    );

    widget
        .send(json!({"type": "message", "client_id": "c4", "text": "after restart"}))
        .await;
    assert_eq!(
        widget.expect("ack").await["seq"],
        4,
        "seq continues after the restart"
    );
    widget
        .send(json!({"type": "message", "client_id": "c2", "text": "before restart 2"}))
        .await;
    assert_eq!(
        widget.expect("ack").await["seq"],
        2,
        "dedupe survives the restart"
    );
}

async fn a_resend_with_the_same_client_id_is_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.agent("Barbara", AgentRole::Admin).await;
    let (mut widget, welcome) = app.visitor().await;
    let conversation = welcome["conversation_id"].as_str().expect("id").to_string();

    for _ in 0..3 {
        widget
            .send(json!({"type": "message", "client_id": "same", "text": "refund please"}))
            .await;
        assert_eq!(
            widget.expect("ack").await,
            json!({"type": "ack", "client_id": "same", "seq": 1})
        );
    }
    widget
        .send(json!({"type": "message", "client_id": "other", "text": "hello?"}))
        .await;
    assert_eq!(widget.expect("ack").await["seq"], 2);

    let path = format!("/api/v1/conversations/{conversation}/messages");
    let first = app
        .post(
            &path,
            Some(&token),
            json!({"text": "on it", "client_id": "agent-1"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let again = app
        .post(
            &path,
            Some(&token),
            json!({"text": "on it", "client_id": "agent-1"}),
        )
        .await;
    assert_eq!(
        again.status(),
        200,
        "a REST resend returns the stored message"
    );
    let again: serde_json::Value = again.json().await.expect("body");
    assert_eq!(again["seq"], 3);

    let listed: serde_json::Value = app
        .get(&path, Some(&token))
        .await
        .json()
        .await
        .expect("list");
    let seqs: Vec<i64> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}
