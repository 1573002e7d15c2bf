//! Bot mode end to end, with the real engine on the demo knowledge base: answers with their
//! sources, escalation on request, on frustration and after two fallbacks, the handoff summary,
//! and a bot that never speaks once a human has the conversation.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, TestApp, Ws, spawn_app, spawn_bot_app};
use crate::on_both_backends;

on_both_backends!(
    a_question_is_answered_with_its_source,
    asking_for_a_human_escalates_at_once,
    a_frustrated_visitor_is_escalated_with_a_summary_naming_the_rule,
    two_fallbacks_in_a_row_escalate,
    the_bot_stays_silent_after_handoff_and_after_the_agent_replies,
    agent_assist_suggests_replies_and_articles,
);

/// Longest the tests wait for the engine to have analysed a message.
const ANALYSIS_WAIT: Duration = Duration::from_secs(20);

async fn say(ws: &mut Ws, client_id: &str, text: &str) -> i64 {
    ws.send(json!({"type": "message", "client_id": client_id, "text": text}))
        .await;
    let ack = ws.expect("ack").await;
    ack["seq"].as_i64().expect("acks carry seq")
}

/// Frames up to and including the bot's next message.
async fn until_bot_message(ws: &mut Ws) -> (Vec<Value>, Value) {
    let mut before = Vec::new();
    loop {
        let frame = ws.next().await;
        if frame["type"] == "message" && frame["author"] == "bot" {
            return (before, frame);
        }
        before.push(frame);
    }
}

/// Frames up to and including the `state` frame saying `queued`.
async fn until_queued(ws: &mut Ws) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = ws.next().await;
        let queued = frame["type"] == "state" && frame["state"] == "queued";
        seen.push(frame);
        if queued {
            return seen;
        }
    }
}

async fn view(app: &TestApp, id: &str, token: &str) -> Value {
    let response = app
        .get(&format!("/api/v1/conversations/{id}"), Some(token))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("conversation view")
}

async fn messages(app: &TestApp, id: &str, token: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/api/v1/conversations/{id}/messages"), Some(token))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("messages");
    body["items"]
        .as_array()
        .expect("a list of messages")
        .clone()
}

/// Waits until the message `seq` has its analysis stored, and returns it.
async fn analysis_of(app: &TestApp, id: &str, token: &str, seq: i64) -> Value {
    let deadline = tokio::time::Instant::now() + ANALYSIS_WAIT;
    loop {
        let found = messages(app, id, token)
            .await
            .into_iter()
            .find(|m| m["seq"] == seq)
            .map(|m| m["analysis"].clone())
            .unwrap_or(Value::Null);
        if !found.is_null() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {seq} was never analysed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_question_is_answered_with_its_source(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (mut ws, welcome) = app.visitor().await;
    assert_eq!(welcome["state"], "bot");
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    let seq = say(&mut ws, "q1", "how do I get my money back for a trip?").await;
    let (before, reply) = until_bot_message(&mut ws).await;
    assert!(
        before
            .iter()
            .any(|f| f["type"] == "typing" && f["author"] == "bot" && f["on"] == true),
        "the bot shows it is typing first: {before:?}"
    );
    assert_eq!(reply["seq"], seq + 1);
    assert_eq!(reply["reply"]["kind"], "answer", "{reply}");
    assert_eq!(reply["reply"]["intent"], "refund_request", "{reply}");
    let confidence = reply["reply"]["confidence"].as_f64().expect("confidence");
    assert!(confidence > 0.5 && confidence <= 1.0, "{confidence}");
    let source = &reply["reply"]["sources"][0];
    assert_eq!(source["link"], "/help/refund-trip", "{reply}");
    assert!(source["title"].as_str().is_some_and(|t| !t.is_empty()));

    let analysis = analysis_of(&app, &id, &admin, seq).await;
    assert_eq!(analysis["intent"]["name"], "refund_request");
    assert!(analysis["sentiment"]["score"].is_number());
    assert!(
        analysis["passages"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    let stored = messages(&app, &id, &admin).await;
    assert_eq!(stored.len(), 2, "the question and the answer: {stored:?}");
    assert_eq!(
        view(&app, &id, &admin).await["state"],
        "bot",
        "an answered question stays with the bot"
    );
    assert_eq!(
        app.metric("switchboard_bot_replies_total{kind=\"answer\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("switchboard_intents_total{intent=\"refund_request\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("switchboard_ai_stage_duration_seconds_count{stage=\"analyze\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("switchboard_embed_batch_size_count").await, 1.0);
    assert_eq!(
        app.metric("switchboard_conversations{state=\"bot\"}").await,
        1.0
    );
}

async fn asking_for_a_human_escalates_at_once(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    let seq = say(&mut ws, "h1", "can I talk to a real person please").await;
    let frames = until_queued(&mut ws).await;
    assert!(
        !frames
            .iter()
            .any(|f| f["type"] == "message" && f["author"] == "bot"),
        "no bot answer once it escalates: {frames:?}"
    );
    let notice = ws.expect("message").await;
    assert_eq!(notice["author"], "system");
    let text = notice["text"].as_str().expect("text");
    assert!(
        text.contains("No agent is online") && text.contains("number 1 in the queue"),
        "{text}"
    );

    let conversation = view(&app, &id, &admin).await;
    assert_eq!(conversation["state"], "queued");
    assert_eq!(conversation["handoff"]["rule"], "visitor-asks-for-human");
    assert_eq!(
        conversation["escalations"][0]["rule"],
        "visitor-asks-for-human"
    );
    assert_eq!(conversation["escalations"][0]["message_seq"], seq);
    assert_eq!(
        app.metric("switchboard_escalations_total{rule=\"visitor-asks-for-human\"}")
            .await,
        1.0
    );
    assert!(
        conversation["handoff"]["last_messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["seq"] == seq))
    );
}

async fn a_frustrated_visitor_is_escalated_with_a_summary_naming_the_rule(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, agent) = app
        .agent_with("Ann", AgentRole::Agent, &["general", "billing"], 5)
        .await;
    app.set_status(&agent, "online").await;
    let mut feed = app.console(&agent).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    let angry = [
        "my driver took a ridiculous route and I was charged double, this is unacceptable",
        "this is the worst service I have ever used, absolutely disgusting",
        "I am furious, you people are useless and nobody is helping me at all",
        "terrible, awful, I hate this app and I want my money back now",
    ];
    let mut escalated = false;
    for (i, text) in angry.iter().enumerate() {
        say(&mut ws, &format!("a{i}"), text).await;
        loop {
            let frame = ws.next().await;
            if frame["type"] == "state" && frame["state"] != "bot" {
                escalated = true;
                break;
            }
            if frame["type"] == "message" && frame["author"] == "bot" {
                break;
            }
        }
        if escalated {
            break;
        }
    }
    assert!(escalated, "angry messages escalate the conversation");
    let mut summary_in_feed = None;
    loop {
        let frame = feed.next().await;
        if frame["type"] == "handoff" && frame["conversation_id"] == id.as_str() {
            summary_in_feed = Some(frame["summary"].clone());
        }
        if frame["type"] == "conversation"
            && frame["conversation"]["id"] == id.as_str()
            && frame["conversation"]["state"] == "assigned"
        {
            break;
        }
    }

    let conversation = view(&app, &id, &admin).await;
    let handoff = &conversation["handoff"];
    assert_eq!(handoff["rule"], "frustrated-visitor", "{handoff}");
    assert!(
        handoff["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sentiment"))
    );
    assert!(handoff["sentiment"]["score"].as_f64().expect("score") < -0.2);
    assert!(handoff["intent"]["name"].is_string());
    assert_eq!(
        summary_in_feed.as_ref(),
        Some(handoff),
        "the agent feed carries the same summary"
    );
    assert!(
        handoff["articles_offered"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "the bot answered the first complaint: {handoff}"
    );
    assert!(
        conversation["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("frustrated")))
    );
    assert!(
        conversation["assignee_id"].is_string(),
        "the online agent with the skill gets it: {conversation}"
    );
}

async fn two_fallbacks_in_a_row_escalate(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    say(&mut ws, "f1", "zxqv blorpt snarfle quux").await;
    let (_, first) = until_bot_message(&mut ws).await;
    assert_eq!(first["reply"]["kind"], "fallback", "{first}");
    assert!(
        first["reply"]["sources"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    say(&mut ws, "f2", "glorp vrenn xyzzy plugh").await;
    until_queued(&mut ws).await;
    let conversation = view(&app, &id, &admin).await;
    assert_eq!(conversation["handoff"]["rule"], "repeated-fallbacks");
    assert!(
        conversation["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("bot-gap")))
    );
}

async fn the_bot_stays_silent_after_handoff_and_after_the_agent_replies(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, agent) = app.agent("Ann", AgentRole::Agent).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();

    say(&mut ws, "h1", "I want to speak to a human agent").await;
    until_queued(&mut ws).await;
    let asked_while_queued = say(&mut ws, "q1", "how do I get a refund for my trip?").await;
    analysis_of(&app, &id, &agent, asked_while_queued).await;

    let claimed = app
        .post(
            &format!("/api/v1/conversations/{id}/claim"),
            Some(&agent),
            json!({}),
        )
        .await;
    assert_eq!(claimed.status(), 200);
    let reply = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            Some(&agent),
            json!({"text": "Hi, Ann here. Let me look at your trip.", "client_id": "agent-1"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let asked_after_reply = say(&mut ws, "q2", "what payment methods do you accept?").await;
    let analysis = analysis_of(&app, &id, &agent, asked_after_reply).await;
    assert_eq!(
        analysis["intent"]["name"], "payment_methods",
        "analysis goes on for agent assist"
    );

    let stored = messages(&app, &id, &agent).await;
    let bot_messages: Vec<&Value> = stored.iter().filter(|m| m["author"] == "bot").collect();
    assert!(
        bot_messages.is_empty(),
        "the bot spoke after handoff: {bot_messages:?}"
    );
    while let Some(frame) = ws.try_next(Duration::from_millis(300)).await {
        assert!(
            !(frame["author"] == "bot"),
            "no bot frame (message or typing) after handoff: {frame}"
        );
    }
}

async fn agent_assist_suggests_replies_and_articles(backend: Backend) {
    let app = spawn_bot_app(backend).await;
    let (_, agent) = app.agent("Ann", AgentRole::Agent).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/conversations/{id}/suggestions");

    let none: Value = app
        .get(&path, Some(&agent))
        .await
        .json()
        .await
        .expect("json");
    assert!(none["message_seq"].is_null(), "{none}");
    assert_eq!(none["replies"], json!([]));

    let seq = say(&mut ws, "p1", "which payment methods can I use?").await;
    let response = app.get(&path, Some(&agent)).await;
    assert_eq!(response.status(), 200);
    let assist: Value = response.json().await.expect("json");
    assert_eq!(assist["message_seq"], seq);
    let first = &assist["replies"][0];
    assert_eq!(first["intent"], "payment_methods", "{assist}");
    assert!(first["text"].as_str().is_some_and(|t| !t.is_empty()));
    let confidence = first["confidence"].as_f64().expect("confidence");
    assert!((0.0..=1.0).contains(&confidence));
    assert_eq!(first["sources"][0]["link"], "/help/payment-methods");
    let articles = assist["articles"].as_array().expect("articles");
    assert!(
        articles
            .iter()
            .any(|a| a["link"] == "/help/payment-methods"),
        "{assist}"
    );
    let links: Vec<&Value> = articles.iter().map(|a| &a["link"]).collect();
    let mut unique = links.clone();
    unique.dedup();
    assert_eq!(links, unique, "each article once");

    assert_eq!(app.get(&path, None).await.status(), 401);
    let unknown = format!("/api/v1/conversations/{}/suggestions", uuid::Uuid::new_v4());
    assert_eq!(app.get(&unknown, Some(&agent)).await.status(), 404);

    let relay = spawn_app(backend).await;
    let (_, relay_agent) = relay.agent("Bo", AgentRole::Agent).await;
    let (_, welcome) = relay.visitor().await;
    let off = relay
        .get(
            &format!(
                "/api/v1/conversations/{}/suggestions",
                welcome["conversation_id"].as_str().expect("id")
            ),
            Some(&relay_agent),
        )
        .await;
    assert_eq!(off.status(), 503, "no engine, no suggestions");
}

/// A read-only cache and index folder (a container's read-only root filesystem) must not stop
/// the engine: it trains and embeds, indexes in RAM, answers, and writes nothing.
#[tokio::test]
async fn the_engine_loads_and_answers_when_its_cache_cannot_be_written() {
    let db = crate::helpers::TestDatabase::new(Backend::Sqlite).await;
    let mut settings = crate::helpers::test_settings(&db.url);
    settings.ai.enabled = true;
    let blocker = tempfile::NamedTempFile::new().expect("a temporary file");
    // No folder can be made under a regular file, whoever the process runs as.
    settings.ai.cache_dir = blocker.path().join("cache");
    settings.ai.index_dir = blocker.path().join("index");
    let engine = switchboard::startup::load_engine(&settings)
        .await
        .expect("the engine loads without its cache");
    assert!(engine.index_sync().in_ram, "the index falls back to RAM");
    let analysis = engine
        .analyze("how do I get a refund for a trip?")
        .await
        .expect("analysed");
    assert_eq!(analysis.intent(), Some("refund_request"));
    assert!(!settings.ai.cache_dir.exists());
}
