//! Retention and privacy: export and delete one visitor's data, the purge job, the audit log.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, Closed, Ws, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    admins_export_and_delete_a_visitor,
    retention_job_purges_what_is_too_old
);

async fn admins_export_and_delete_a_visitor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, admin_token) = app.agent("Privacy Officer", AgentRole::Admin).await;
    let (_, agent_token) = app.agent("Plain Agent", AgentRole::Agent).await;
    let (mut widget, welcome) = app.visitor().await;
    let token = welcome["token"].as_str().expect("token").to_string();
    let conversation = welcome["conversation_id"].as_str().expect("id").to_string();
    for (i, text) in ["my email is a@b.example", "please forget me"]
        .iter()
        .enumerate()
    {
        widget
            .send(json!({"type": "message", "client_id": format!("p{i}"), "text": text}))
            .await;
        widget.expect("ack").await;
    }
    let answer = app.bot_says(&conversation, "I can help with that").await;
    widget
        .send(json!({"type": "rate_answer", "seq": answer, "rating": "up"}))
        .await;
    widget.expect("rated").await;
    let path = format!("/api/v1/conversations/{conversation}");
    app.post(&format!("{path}/claim"), Some(&admin_token), json!({}))
        .await;
    app.post(
        &format!("{path}/messages"),
        Some(&admin_token),
        json!({"text": "done"}),
    )
    .await;
    let view: Value = app
        .get(&path, Some(&admin_token))
        .await
        .json()
        .await
        .expect("conversation");
    let visitor = view["visitor_id"].as_str().expect("visitor id").to_string();

    let export_path = format!("/api/v1/visitors/{visitor}/export");
    assert_eq!(
        app.get(&export_path, Some(&agent_token)).await.status(),
        403
    );
    let export: Value = app
        .get(&export_path, Some(&admin_token))
        .await
        .json()
        .await
        .expect("export");
    assert_eq!(export["visitor_id"], visitor.as_str());
    let messages = export["conversations"][0]["messages"]
        .as_array()
        .expect("messages");
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        vec![
            "my email is a@b.example",
            "please forget me",
            "I can help with that",
            "done"
        ]
    );
    let feedback = &export["conversations"][0]["feedback"];
    assert_eq!(feedback[0]["message_seq"], answer);
    assert_eq!(feedback[0]["rating"], "up");

    let erase = app
        .http
        .delete(format!("{}/api/v1/visitors/{visitor}", app.address));
    let removed: Value = erase
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(
        removed,
        json!({"visitors": 1, "conversations": 1, "messages": 4})
    );
    let feedback: Value = app
        .get("/api/v1/feedback", Some(&admin_token))
        .await
        .json()
        .await
        .expect("feedback list");
    assert_eq!(
        feedback["items"],
        json!([]),
        "the visitor's ratings went too"
    );
    assert_eq!(
        app.get(&export_path, Some(&admin_token)).await.status(),
        404
    );
    assert_eq!(app.get(&path, Some(&admin_token)).await.status(), 404);
    let again = app
        .http
        .delete(format!("{}/api/v1/visitors/{visitor}", app.address));
    assert_eq!(
        again
            .bearer_auth(&admin_token)
            .send()
            .await
            .expect("delete")
            .status(),
        404
    );

    let mut returning = Ws::connect(&app.ws_url("/ws/widget")).await;
    returning
        .send(json!({"type": "hello", "protocol": 1, "token": token}))
        .await;
    assert_eq!(
        returning.expect_error().await,
        "unauthorized",
        "a deleted visitor's token opens nothing"
    );
    assert_eq!(returning.closed().await, Closed::Code(4001));

    let audit: Value = app
        .get("/api/v1/audit", Some(&admin_token))
        .await
        .json()
        .await
        .expect("audit");
    let actions: Vec<(&str, &str, &str)> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
                e["subject"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let admin_id = admin.id.to_string();
    assert_eq!(
        actions,
        vec![
            ("delete_visitor", admin_id.as_str(), visitor.as_str()),
            ("export_visitor", admin_id.as_str(), visitor.as_str())
        ]
    );
    assert_eq!(
        app.get("/api/v1/audit", Some(&agent_token)).await.status(),
        403
    );
}

async fn retention_job_purges_what_is_too_old(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.retention.days = 30;
        s.retention.purge_interval_secs = 1;
    })
    .await;
    let (_, admin) = app.agent("Keeper", AgentRole::Admin).await;
    let (mut old, old_welcome) = app.visitor().await;
    old.send(json!({"type": "message", "client_id": "o", "text": "from long ago"}))
        .await;
    old.expect("ack").await;
    let (_recent, recent_welcome) = app.visitor().await;
    let old_id = old_welcome["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();
    let recent_id = recent_welcome["conversation_id"]
        .as_str()
        .expect("id")
        .to_string();

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.db.url)
        .await
        .expect("direct database access");
    let ninety_days_ago = chrono::Utc::now().timestamp_millis() - 90 * 24 * 60 * 60 * 1000;
    sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
        .bind(ninety_days_ago)
        .bind(&old_id)
        .execute(&pool)
        .await
        .expect("age the conversation");
    sqlx::query("UPDATE visitors SET created_at = $1 WHERE id IN (SELECT visitor_id FROM conversations WHERE id = $2)")
        .bind(ninety_days_ago)
        .bind(&old_id)
        .execute(&pool)
        .await
        .expect("age the visitor");

    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .get(&format!("/api/v1/conversations/{old_id}"), Some(&admin))
        .await
        .status()
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the purge job never removed the old conversation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{recent_id}"), Some(&admin))
            .await
            .status(),
        200
    );
    let audit: Value = app
        .get("/api/v1/audit", Some(&admin))
        .await
        .json()
        .await
        .expect("audit");
    let purge = &audit[0];
    assert_eq!(
        (purge["action"].as_str(), purge["actor"].as_str()),
        (Some("purge"), Some("system"))
    );
    assert_eq!(
        purge["detail"]["removed"],
        json!({"visitors": 1, "conversations": 1, "messages": 1})
    );
}
