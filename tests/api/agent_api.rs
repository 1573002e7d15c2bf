//! The agent console REST API and live feed.

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    listing_filters_and_paginates,
    claim_resolve_reopen_and_status,
    racing_claims_have_exactly_one_winner,
    agents_only_see_unassigned_and_their_own,
    admins_create_agents,
);

async fn listing_filters_and_paginates(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let (_, welcome) = app.visitor().await;
        ids.push(welcome["conversation_id"].as_str().expect("id").to_string());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations?limit=3&cursor={c}"),
            None => "/api/v1/conversations?limit=3".to_string(),
        };
        let page: Value = app
            .get(&path, Some(&admin))
            .await
            .json()
            .await
            .expect("page");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every conversation exactly once, newest first");

    let claim = app
        .post(
            &format!("/api/v1/conversations/{}/claim", ids[0]),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(claim.status(), 200);
    let assigned: Value = app
        .get("/api/v1/conversations?state=assigned", Some(&admin))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(assigned["items"].as_array().map(Vec::len), Some(1));
    let mine: Value = app
        .get("/api/v1/conversations?assignee=me", Some(&admin))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(mine["items"][0]["id"], ids[0].as_str());
    let bots: Value = app
        .get("/api/v1/conversations?state=bot&limit=100", Some(&admin))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(bots["items"].as_array().map(Vec::len), Some(6));
}

async fn claim_resolve_reopen_and_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let (agent, token) = app.agent("Dennis", AgentRole::Agent).await;
    let (mut widget, welcome) = app.visitor().await;
    let path = format!(
        "/api/v1/conversations/{}",
        welcome["conversation_id"].as_str().expect("id")
    );

    let me: Value = app
        .put(
            "/api/v1/agents/me/status",
            Some(&token),
            json!({"status": "online"}),
        )
        .await
        .json()
        .await
        .expect("agent");
    assert_eq!(me["status"], "online");
    let me: Value = app
        .get("/api/v1/agents/me", Some(&token))
        .await
        .json()
        .await
        .expect("agent");
    assert_eq!(me["id"], agent.id.to_string());

    assert_eq!(
        app.post(&format!("{path}/resolve"), Some(&token), json!({}))
            .await
            .status(),
        403,
        "not yours yet"
    );
    let claimed: Value = app
        .post(&format!("{path}/claim"), Some(&token), json!({}))
        .await
        .json()
        .await
        .expect("conversation");
    assert_eq!(claimed["state"], "assigned");
    assert_eq!(claimed["assignee_id"], agent.id.to_string());
    assert_eq!(
        app.post(&format!("{path}/claim"), Some(&token), json!({}))
            .await
            .status(),
        409,
        "no double claim"
    );
    assert_eq!(widget.expect("state").await["state"], "assigned");

    let resolved: Value = app
        .post(&format!("{path}/resolve"), Some(&token), json!({}))
        .await
        .json()
        .await
        .expect("conversation");
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(widget.expect("state").await["state"], "resolved");
    assert_eq!(
        app.post(&format!("{path}/resolve"), Some(&token), json!({}))
            .await
            .status(),
        409
    );
    let reopened: Value = app
        .post(&format!("{path}/reopen"), Some(&token), json!({}))
        .await
        .json()
        .await
        .expect("conversation");
    assert_eq!(reopened["state"], "assigned");
    assert_eq!(widget.expect("state").await["state"], "assigned");
    assert_eq!(
        app.post(&format!("{path}/reopen"), Some(&token), json!({}))
            .await
            .status(),
        409
    );

    assert_eq!(
        app.post(&format!("{path}/resolve"), Some(&token), json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(widget.expect("state").await["state"], "resolved");
    widget
        .send(json!({"type": "message", "client_id": "back", "text": "one more question"}))
        .await;
    let (first, second) = (widget.next().await, widget.next().await);
    let (ack, state) = if first["type"] == "ack" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(ack["client_id"], "back");
    assert_eq!(
        state["state"], "bot",
        "a visitor writing after resolution brings the bot back"
    );
}

async fn racing_claims_have_exactly_one_winner(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(app.agent(&format!("Racer {i}"), AgentRole::Agent).await.1);
    }
    let (_, welcome) = app.visitor().await;
    let url = format!(
        "{}/api/v1/conversations/{}/claim",
        app.address,
        welcome["conversation_id"].as_str().expect("id")
    );
    let claims = tokens.iter().map(|t| {
        let req = app.http.post(&url).bearer_auth(t).json(&json!({}));
        async move {
            req.send()
                .await
                .expect("claim reaches the server")
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(claims).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
}

async fn agents_only_see_unassigned_and_their_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice) = app.agent("Alice", AgentRole::Agent).await;
    let (_, bob) = app.agent("Bob", AgentRole::Agent).await;
    let (_, admin) = app.agent("Carol", AgentRole::Admin).await;
    let mut bob_feed = app.console(&bob).await;
    let mut admin_feed = app.console(&admin).await;

    let (mut widget, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_string();
    assert_eq!(bob_feed.expect("conversation").await["event"], "created");
    app.post(
        &format!("/api/v1/conversations/{id}/claim"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(
        bob_feed.expect("conversation").await["conversation"]["state"],
        "assigned",
        "bob learns it was taken"
    );

    widget
        .send(json!({"type": "message", "client_id": "p", "text": "private to alice"}))
        .await;
    widget.expect("ack").await;
    assert_eq!(
        admin_feed.expect("message").await["text"],
        "private to alice",
        "admins see everything"
    );
    assert!(
        bob_feed
            .try_next(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "bob does not see alice's messages"
    );

    assert_eq!(
        app.get(&format!("/api/v1/conversations/{id}"), Some(&bob))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{id}/messages"), Some(&bob))
            .await
            .status(),
        403
    );
    let listed: Value = app
        .get("/api/v1/conversations", Some(&bob))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    let listed: Value = app
        .get("/api/v1/conversations", Some(&alice))
        .await
        .json()
        .await
        .expect("page");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

async fn admins_create_agents(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Boss", AgentRole::Admin).await;
    let body = json!({"name": "New Hire", "email": "New.Hire@Example.test", "role": "agent", "skills": ["Billing", "safety"], "max_concurrent": 3});
    let r = app.post("/api/v1/agents", Some(&admin), body.clone()).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("created");
    assert_eq!(created["agent"]["email"], "new.hire@example.test");
    assert_eq!(created["agent"]["skills"], json!(["billing", "safety"]));
    let token = created["token"].as_str().expect("token");
    let me: Value = app
        .get("/api/v1/agents/me", Some(token))
        .await
        .json()
        .await
        .expect("me");
    assert_eq!(me["name"], "New Hire", "the returned token works");

    assert_eq!(
        app.post("/api/v1/agents", Some(&admin), body)
            .await
            .status(),
        409,
        "emails are unique"
    );
    let bad = json!({"name": "", "email": "x@y.z", "role": "agent"});
    let r = app.post("/api/v1/agents", Some(&admin), bad).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("name"));
    let team: Value = app
        .get("/api/v1/agents", Some(&admin))
        .await
        .json()
        .await
        .expect("team");
    assert_eq!(team.as_array().map(Vec::len), Some(2));
}
