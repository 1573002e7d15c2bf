//! Escalation rules over REST: seeded defaults, checked definitions, admin-only CRUD.

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    default_rules_are_seeded_and_listed_in_order,
    admins_create_replace_and_delete_rules,
    invalid_rules_are_refused_naming_the_field,
    only_admins_manage_rules,
);

async fn default_rules_are_seeded_and_listed_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let rules: Vec<Value> = app
        .get("/api/v1/escalation-rules", Some(&admin))
        .await
        .json()
        .await
        .expect("rules");
    let names: Vec<&str> = rules
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "safety",
            "account-hacked",
            "visitor-asks-for-human",
            "repeated-fallbacks",
            "frustrated-visitor"
        ]
    );
    assert_eq!(rules[0]["definition"]["then"][0]["escalate"]["priority"], 3);

    let app = app.restart().await;
    let again: Vec<Value> = app
        .get("/api/v1/escalation-rules", Some(&admin))
        .await
        .json()
        .await
        .expect("rules");
    assert_eq!(again.len(), 5, "a restart does not seed twice");
}

async fn admins_create_replace_and_delete_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let rule = json!({
        "name": "vip",
        "when": {"all": [{"visitor_attribute": {"key": "plan", "equals": "gold"}}, {"message_count_at_least": 1}]},
        "then": [{"escalate": {"priority": 2, "skill": "billing"}}, {"tag": "vip"}]
    });
    let created = app
        .post("/api/v1/escalation-rules", Some(&admin), rule.clone())
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("rule");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["definition"]["when"], rule["when"]);
    assert_eq!(created["position"], 6, "appended after the five defaults");

    let duplicate = app
        .post("/api/v1/escalation-rules", Some(&admin), rule.clone())
        .await;
    assert_eq!(duplicate.status(), 409);

    let mut changed = rule.clone();
    changed["enabled"] = json!(false);
    changed["then"] = json!([{"tag": "gold"}]);
    let replaced = app
        .put(
            &format!("/api/v1/escalation-rules/{id}"),
            Some(&admin),
            changed,
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let fetched: Value = app
        .get(&format!("/api/v1/escalation-rules/{id}"), Some(&admin))
        .await
        .json()
        .await
        .expect("rule");
    assert_eq!(fetched["enabled"], false);
    assert_eq!(fetched["definition"]["then"], json!([{"tag": "gold"}]));

    let deleted = app
        .delete(&format!("/api/v1/escalation-rules/{id}"), Some(&admin))
        .await;
    assert_eq!(deleted.status(), 204);
    let gone = app
        .get(&format!("/api/v1/escalation-rules/{id}"), Some(&admin))
        .await;
    assert_eq!(gone.status(), 404);
    let again = app
        .delete(&format!("/api/v1/escalation-rules/{id}"), Some(&admin))
        .await;
    assert_eq!(again.status(), 404);
}

async fn invalid_rules_are_refused_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let cases = [
        (
            json!({"name": "x", "when": {"any": [{"out_of_scope": true}, {"regex": "(["}]}, "then": [{"tag": "t"}]}),
            "when.any[1].regex",
        ),
        (
            json!({"name": "x", "when": {"sentiment_below": -3}, "then": [{"tag": "t"}]}),
            "when.sentiment_below",
        ),
        (
            json!({"name": "x", "when": {"out_of_scope": true}, "then": [{"escalate": {"priority": 7}}]}),
            "then[0].escalate.priority",
        ),
        (
            json!({"name": "x", "when": {"moon_phase": "full"}, "then": [{"tag": "t"}]}),
            "when",
        ),
        (json!({"name": "x", "when": {"out_of_scope": true}}), "rule"),
    ];
    for (rule, field) in cases {
        let response = app
            .post("/api/v1/escalation-rules", Some(&admin), rule.clone())
            .await;
        assert_eq!(response.status(), 422, "{rule}");
        let body: Value = response.json().await.expect("error body");
        assert_eq!(body["code"], "invalid");
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["message"].as_str().expect("message").len() > field.len(),
            "{body}"
        );
    }
    let rules: Vec<Value> = app
        .get("/api/v1/escalation-rules", Some(&admin))
        .await
        .json()
        .await
        .expect("rules");
    assert_eq!(rules.len(), 5, "nothing invalid was saved");
}

async fn only_admins_manage_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, agent) = app.agent("Ann", AgentRole::Agent).await;
    let listed = app.get("/api/v1/escalation-rules", Some(&agent)).await;
    assert_eq!(listed.status(), 403);
    let created = app
        .post(
            "/api/v1/escalation-rules",
            Some(&agent),
            json!({"name": "x", "when": {"out_of_scope": true}, "then": [{"tag": "t"}]}),
        )
        .await;
    assert_eq!(created.status(), 403);
    let anonymous = app.get("/api/v1/escalation-rules", None).await;
    assert_eq!(anonymous.status(), 401);
}
