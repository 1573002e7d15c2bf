//! Routing: transfer to a skill or an agent, re-queueing when an agent goes offline, automatic
//! assignment by skill and capacity, handing back to the bot.

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_transfer_to_a_skill_is_routed_to_an_agent_with_it,
    going_offline_requeues_to_the_next_free_agent,
    with_nobody_online_the_conversation_waits_in_the_queue,
    a_transfer_to_a_full_agent_is_refused,
    hand_back_returns_the_conversation_to_the_bot,
);

async fn conversation(app: &TestApp) -> (crate::helpers::Ws, String) {
    let (ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    (ws, id)
}

async fn claim(app: &TestApp, id: &str, token: &str) {
    let response = app
        .post(
            &format!("/api/v1/conversations/{id}/claim"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "claim accepted");
}

async fn view(app: &TestApp, id: &str, token: &str) -> Value {
    app.get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await
        .json()
        .await
        .expect("conversation")
}

async fn a_transfer_to_a_skill_is_routed_to_an_agent_with_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, ann) = app
        .agent_with("Ann", AgentRole::Agent, &["general"], 5)
        .await;
    let (bob, bob_token) = app
        .agent_with("Bob", AgentRole::Agent, &["billing"], 5)
        .await;
    let (cat, cat_token) = app
        .agent_with("Cat", AgentRole::Agent, &["billing"], 5)
        .await;
    app.set_status(&bob_token, "online").await;
    app.set_status(&cat_token, "online").await;
    let (_, busy) = conversation(&app).await;
    claim(&app, &busy, &bob_token).await;

    let (_ws, id) = conversation(&app).await;
    claim(&app, &id, &ann).await;
    let moved = app
        .post(
            &format!("/api/v1/conversations/{id}/transfer"),
            Some(&ann),
            json!({"skill": "billing"}),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let moved: Value = moved.json().await.expect("conversation");
    assert_eq!(moved["state"], "assigned");
    assert_eq!(moved["skill"], "billing");
    assert_eq!(
        moved["assignee_id"],
        cat.id.to_string(),
        "the least loaded billing agent gets it, not {}",
        bob.id
    );
    let now = view(&app, &id, &admin).await;
    assert_eq!(now["assignee_id"], cat.id.to_string());
}

async fn going_offline_requeues_to_the_next_free_agent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ann, ann_token) = app.agent("Ann", AgentRole::Agent).await;
    let (bob, bob_token) = app.agent("Bob", AgentRole::Agent).await;
    app.set_status(&ann_token, "online").await;
    let (mut visitor, id) = conversation(&app).await;
    claim(&app, &id, &ann_token).await;
    assert_eq!(visitor.expect("state").await["state"], "assigned");
    app.set_status(&bob_token, "online").await;

    app.set_status(&ann_token, "offline").await;
    let now = view(&app, &id, &bob_token).await;
    assert_eq!(now["state"], "assigned");
    assert_eq!(now["assignee_id"], bob.id.to_string(), "not {}", ann.id);
    assert_eq!(visitor.expect("state").await["state"], "queued");
    assert_eq!(visitor.expect("state").await["state"], "assigned");
}

async fn with_nobody_online_the_conversation_waits_in_the_queue(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;
    let (_, first) = conversation(&app).await;
    let (_, second) = conversation(&app).await;
    app.set_status(&ann, "online").await;
    claim(&app, &first, &ann).await;
    claim(&app, &second, &ann).await;
    app.set_status(&ann, "offline").await;

    let queue: Vec<Value> = app
        .get("/api/v1/queue", Some(&ann))
        .await
        .json()
        .await
        .expect("queue");
    let ids: Vec<&str> = queue
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    assert!(
        queue
            .iter()
            .all(|c| c["state"] == "queued" && c["assignee_id"].is_null())
    );

    app.set_status(&ann, "online").await;
    let queue: Vec<Value> = app
        .get("/api/v1/queue", Some(&ann))
        .await
        .json()
        .await
        .expect("queue");
    assert!(
        queue.is_empty(),
        "coming online picks the queue up: {queue:?}"
    );
}

async fn a_transfer_to_a_full_agent_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;
    let (bob, bob_token) = app
        .agent_with("Bob", AgentRole::Agent, &["general"], 1)
        .await;
    app.set_status(&bob_token, "online").await;
    let (_, his) = conversation(&app).await;
    claim(&app, &his, &bob_token).await;
    let (_, id) = conversation(&app).await;
    claim(&app, &id, &ann).await;

    let refused = app
        .post(
            &format!("/api/v1/conversations/{id}/transfer"),
            Some(&ann),
            json!({"agent_id": bob.id}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.expect("error");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("capacity"),
        "{body}"
    );

    let unknown = app
        .post(
            &format!("/api/v1/conversations/{id}/transfer"),
            Some(&ann),
            json!({"agent_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    let garbage = app
        .post(
            &format!("/api/v1/conversations/{id}/transfer"),
            Some(&ann),
            json!({"team": "x"}),
        )
        .await;
    assert_eq!(garbage.status(), 400);
}

async fn hand_back_returns_the_conversation_to_the_bot(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;
    let (_, bob) = app.agent("Bob", AgentRole::Agent).await;
    let (mut visitor, id) = conversation(&app).await;
    claim(&app, &id, &ann).await;
    assert_eq!(visitor.expect("state").await["state"], "assigned");

    let forbidden = app
        .post(
            &format!("/api/v1/conversations/{id}/handback"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(forbidden.status(), 403);
    let back = app
        .post(
            &format!("/api/v1/conversations/{id}/handback"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(back.status(), 200);
    let back: Value = back.json().await.expect("conversation");
    assert_eq!(back["state"], "bot");
    assert!(back["assignee_id"].is_null());
    assert_eq!(visitor.expect("state").await["state"], "bot");
    let again = app
        .post(
            &format!("/api/v1/conversations/{id}/handback"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(again.status(), 403, "no longer hers");
}
