//! Intents over the admin API: listed, read, created and replaced by name, deleted (not while
//! an article lists it or an escalation rule tests for it, and no rule may test for an intent
//! that does not exist); bad content is a 422 with every reason. A change retrains the running engine's intent head at
//! once, and a change stored by anyone else (another replica, `kb import`) reaches it within
//! seconds through the knowledge base's revision.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::ai::{ConversationContext, Engine, ReplyKind};
use switchboard::domain::AgentRole;
use switchboard::kb::Intent;
use switchboard::knowledge::FOLLOW_EVERY;
use switchboard::store::Store;

use crate::helpers::{Backend, spawn_bot_app_with_own_engine};
use crate::on_both_backends;

on_both_backends!(intents_change_the_running_engine);

const NAME: &str = "surfboard_transport";
const QUESTION: &str = "is there room for my surfboard on the way to the beach?";

fn surfboards(answer: &str) -> Value {
    json!({
        "description": "The visitor wants to bring a surfboard on a ride.",
        "examples": [
            "can I bring my surfboard",
            "will the driver take a surfboard",
            "my surfboard needs to come with me",
            "is there space for a surf board in the car",
            "ride to the beach with my board",
            "can a longboard fit in the car",
            "I have a surfboard, which ride should I book",
            "does the car have a roof rack for my surfboard",
            "taking my surfboard to the coast",
            "do drivers accept surfboards",
            "transport a surfboard",
            "can I take two surfboards",
            "surfboard on a ride, is that ok",
            "will my surf board fit in the trunk",
            "book a car big enough for a surfboard",
        ],
        "answer": answer,
        "skill": "general",
    })
}

async fn intent_of(engine: &std::sync::Arc<Engine>, text: &str) -> Option<String> {
    let analysis = engine.analyze(text).await.expect("analysed");
    analysis.intent().map(str::to_owned)
}

async fn intents_change_the_running_engine(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder for the index and the cache");
    let app = spawn_bot_app_with_own_engine(backend, dir.path()).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, agent) = app.agent("Ann", AgentRole::Agent).await;
    let engine = app.engine();
    let path = format!("/api/v1/intents/{NAME}");

    assert_eq!(app.get("/api/v1/intents", None).await.status(), 401);
    assert_eq!(app.get("/api/v1/intents", Some(&agent)).await.status(), 403);
    let put = app.put(&path, Some(&agent), surfboards("x")).await;
    assert_eq!(put.status(), 403, "agents cannot write intents");
    let listed: Vec<Intent> = app
        .get("/api/v1/intents", Some(&admin))
        .await
        .json()
        .await
        .expect("a list");
    assert!(listed.len() >= 25, "the seeded intents are listed");
    let human: Intent = app
        .get("/api/v1/intents/human_agent", Some(&admin))
        .await
        .json()
        .await
        .expect("an intent");
    assert!(human.escalate && human.examples.len() >= 15);
    let missing = app.get(&path, Some(&admin)).await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("error body");
    assert_eq!(body["code"], "not_found");

    let mut bad = surfboards("x");
    bad["examples"] = json!(["  ", human.examples[0]]);
    bad["article"] = json!("no-such-article");
    let refused = app.put(&path, Some(&admin), bad).await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("error body");
    assert_eq!(body["code"], "invalid");
    let message = body["message"].as_str().expect("a message");
    for reason in ["blank example", "no-such-article", "`human_agent`"] {
        assert!(message.contains(reason), "{reason} in {message}");
    }
    let bad_name = app
        .put(
            "/api/v1/intents/Surf%20Boards",
            Some(&admin),
            surfboards("x"),
        )
        .await;
    assert_eq!(bad_name.status(), 422);
    let mut unknown_field = surfboards("x");
    unknown_field["examplez"] = json!([]);
    let unknown = app.put(&path, Some(&admin), unknown_field).await;
    assert_eq!(unknown.status(), 400);

    assert_ne!(intent_of(&engine, QUESTION).await.as_deref(), Some(NAME));
    let created = app
        .put(
            &path,
            Some(&admin),
            surfboards("Surfboards ride free in an XL car: pick XL when you book."),
        )
        .await;
    assert_eq!(created.status(), 201);
    let intent: Intent = created.json().await.expect("the intent");
    assert_eq!(intent.name, NAME);
    assert_eq!(
        intent_of(&engine, QUESTION).await.as_deref(),
        Some(NAME),
        "the head was retrained on the new intent"
    );

    let replaced = app
        .put(
            &path,
            Some(&admin),
            surfboards("Book an XL car: it has room for two boards."),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let analysis = engine.analyze(QUESTION).await.expect("analysed");
    let reply = engine.respond(&analysis, &ConversationContext::default());
    assert_eq!(reply.kind, ReplyKind::Answer);
    assert_eq!(reply.text, "Book an XL car: it has room for two boards.");
    assert_eq!(engine.intent_skill(NAME).as_deref(), Some("general"));

    let listed = app
        .delete("/api/v1/intents/accessibility", Some(&admin))
        .await;
    assert_eq!(listed.status(), 422, "an article lists it");
    let body: Value = listed.json().await.expect("error body");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`accessibility-options`")),
        "{body}"
    );

    let unknown = json!({
        "name": "nobody-says-this",
        "when": {"any": [{"keywords": ["x"]}, {"intent_in": ["lost_item", "no_such_intent"]}]},
        "then": [{"tag": "t"}],
    });
    let refused = app
        .post("/api/v1/escalation-rules", Some(&admin), unknown)
        .await;
    assert_eq!(
        refused.status(),
        422,
        "a rule cannot test for an unknown intent"
    );
    let body: Value = refused.json().await.expect("error body");
    assert_eq!(body["field"], "when.any[1].intent_in[1]", "{body}");

    let rule = json!({
        "name": "surfboards-to-a-person",
        "when": {"all": [{"intent_in": ["lost_item"]}, {"not": {"intent_in": [NAME]}}]},
        "then": [{"escalate": {"priority": 3}}],
    });
    let created = app
        .post("/api/v1/escalation-rules", Some(&admin), rule)
        .await;
    assert_eq!(created.status(), 201);
    let rule_id = created.json::<Value>().await.expect("the rule")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let tested = app.delete(&path, Some(&admin)).await;
    assert_eq!(tested.status(), 422, "a rule tests for it");
    let body: Value = tested.json().await.expect("error body");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`surfboards-to-a-person`")),
        "{body}"
    );
    let rule_path = format!("/api/v1/escalation-rules/{rule_id}");
    assert_eq!(app.delete(&rule_path, Some(&admin)).await.status(), 204);

    let deleted = app.delete(&path, Some(&admin)).await;
    assert_eq!(deleted.status(), 204);
    assert_ne!(intent_of(&engine, QUESTION).await.as_deref(), Some(NAME));
    assert_eq!(app.delete(&path, Some(&admin)).await.status(), 404);

    // Another replica (or `kb import`) stores the intent: this one follows.
    let elsewhere = Store::connect(&app.settings.database.url, 1)
        .await
        .expect("a second connection to the database");
    let revision = elsewhere.knowledge_revision().await.expect("a revision");
    let mut intent = intent;
    intent.answer = Some("Stored by another replica.".into());
    elsewhere.put_intent(&intent).await.expect("stored");
    assert_eq!(
        elsewhere.knowledge_revision().await.expect("a revision"),
        revision + 1
    );
    let deadline = Instant::now() + FOLLOW_EVERY * 10;
    while intent_of(&engine, QUESTION).await.as_deref() != Some(NAME) {
        assert!(
            Instant::now() < deadline,
            "the engine did not follow the stored change"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let analysis = engine.analyze(QUESTION).await.expect("analysed");
    let reply = engine.respond(&analysis, &ConversationContext::default());
    assert_eq!(reply.text, "Stored by another replica.");
    elsewhere.close().await;
}
