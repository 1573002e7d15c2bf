//! Articles over the admin API: listed, read, created and replaced by id, deleted; bad content
//! is a 422 with the reason. A change reaches the running engine at once, re-embedding and
//! re-indexing only that article, so the next question is answered from it.

use serde_json::{Value, json};
use switchboard::ai::retrieval::IndexSync;
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, TestApp, spawn_bot_app_with_own_engine};
use crate::on_both_backends;

on_both_backends!(articles_change_the_running_engine);

const ID: &str = "pets-on-board";

fn pets(second_section: &str) -> Value {
    json!({
        "title": "Travelling with pets",
        "tags": ["pets"],
        "intents": [],
        "body": format!(
            "# Travelling with pets\n\n## Small animals in a carrier\n\nA hamster, cat or small dog may ride along in a closed pet carrier on your lap. Tell the driver when they arrive.\n\n## Cleaning fee\n\n{second_section}\n"
        ),
    })
}

async fn stored_embeddings(app: &TestApp) -> usize {
    app.state
        .chat
        .store()
        .passage_embeddings()
        .await
        .expect("reads")
        .len()
}

async fn top_passage(app: &TestApp, question: &str) -> String {
    let analysis = app.engine().analyze(question).await.expect("analysed");
    analysis.passages[0].id.clone()
}

async fn articles_change_the_running_engine(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder for the index");
    let app = spawn_bot_app_with_own_engine(backend, dir.path()).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, agent) = app.agent("Ann", AgentRole::Agent).await;
    let engine = app.engine();

    assert_eq!(app.get("/api/v1/articles", None).await.status(), 401);
    assert_eq!(
        app.get("/api/v1/articles", Some(&agent)).await.status(),
        403
    );
    let put = app
        .put(&format!("/api/v1/articles/{ID}"), Some(&agent), pets("x"))
        .await;
    assert_eq!(put.status(), 403, "agents cannot write articles");
    let listed: Vec<Value> = app
        .get("/api/v1/articles", Some(&admin))
        .await
        .json()
        .await
        .expect("a list");
    assert!(listed.len() >= 40, "the seeded articles are listed");
    let missing = app
        .get(&format!("/api/v1/articles/{ID}"), Some(&admin))
        .await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("error body");
    assert_eq!(body["code"], "not_found");

    let mut bad = pets("A fee.");
    bad["body"] = json!("# Pets\n\nOnly one part.\n");
    bad["intents"] = json!(["no_such_intent"]);
    let refused = app
        .put(&format!("/api/v1/articles/{ID}"), Some(&admin), bad)
        .await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("error body");
    assert_eq!(body["code"], "invalid");
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains("sections") && message.contains("no_such_intent"),
        "{message}"
    );
    let bad_id = app
        .put("/api/v1/articles/Bad%20Id", Some(&admin), pets("A fee."))
        .await;
    assert_eq!(bad_id.status(), 422);

    let before = stored_embeddings(&app).await;
    let question = "can my hamster come along in a pet carrier?";
    assert!(!top_passage(&app, question).await.starts_with(ID));
    let created = app
        .put(
            &format!("/api/v1/articles/{ID}"),
            Some(&admin),
            pets("A cleaning fee is charged when a pet leaves the car dirty."),
        )
        .await;
    assert_eq!(created.status(), 201);
    let article: Value = created.json().await.expect("the article");
    assert_eq!(article["id"], ID);
    assert_eq!(
        stored_embeddings(&app).await,
        before + 2,
        "its two passages embedded"
    );
    assert_eq!(
        engine.index_sync(),
        IndexSync {
            indexed: 2,
            ..IndexSync::default()
        },
        "only the new article indexed"
    );
    assert_eq!(top_passage(&app, question).await, format!("{ID}#0"));

    let replaced = app
        .put(
            &format!("/api/v1/articles/{ID}"),
            Some(&admin),
            pets("No fee for pets in a carrier; a soiled seat costs a cleaning fee of 40 euros."),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    assert_eq!(
        engine.index_sync(),
        IndexSync {
            indexed: 1,
            deleted: 1,
            ..IndexSync::default()
        },
        "only the changed section re-indexed"
    );
    assert_eq!(
        stored_embeddings(&app).await,
        before + 2,
        "the changed section re-embedded, its old embedding dropped"
    );
    assert_eq!(
        top_passage(
            &app,
            "how much is the cleaning fee for a soiled seat after my dog rode along?"
        )
        .await,
        format!("{ID}#1")
    );
    let read: Value = app
        .get(&format!("/api/v1/articles/{ID}"), Some(&admin))
        .await
        .json()
        .await
        .expect("the article");
    assert!(
        read["body"]
            .as_str()
            .is_some_and(|b| b.contains("40 euros"))
    );

    let deleted = app
        .delete(&format!("/api/v1/articles/{ID}"), Some(&admin))
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        engine.index_sync(),
        IndexSync {
            deleted: 2,
            ..IndexSync::default()
        }
    );
    assert!(!top_passage(&app, question).await.starts_with(ID));
    assert_eq!(stored_embeddings(&app).await, before);
    let again = app
        .delete(&format!("/api/v1/articles/{ID}"), Some(&admin))
        .await;
    assert_eq!(again.status(), 404);
}
