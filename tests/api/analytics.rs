//! Analytics: a scripted day of conversations (over the widget socket, REST, and the library's
//! `Chat` for what the bot does), with event times pinned to a timeline, must give exactly the
//! summary the definitions in docs/console-api.md say, and the desk's metrics must agree.

use serde_json::{Value, json};
use switchboard::domain::{AgentRole, ConversationId};
use switchboard::store::Escalation;

use crate::helpers::{Backend, TestApp, Ws, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    analytics_figures_match_a_scripted_scenario,
    the_summary_is_for_admins_over_a_valid_window,
);

/// 2026-01-05T00:00:00Z, the start of the scripted day.
const T0_MS: i64 = 1_767_571_200_000;

fn at(seconds: i64) -> i64 {
    T0_MS + seconds * 1000
}

async fn conversation(app: &TestApp) -> (Ws, String) {
    let (ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    (ws, id)
}

async fn say(ws: &mut Ws, client_id: &str, text: &str) -> i64 {
    ws.send(json!({"type": "message", "client_id": client_id, "text": text}))
        .await;
    ws.expect("ack").await["seq"].as_i64().expect("seq")
}

async fn rate(ws: &mut Ws, frame: Value) {
    ws.send(frame).await;
    ws.expect("rated").await;
}

async fn act(app: &TestApp, id: &str, action: &str, token: &str) {
    let response = app
        .post(
            &format!("/api/v1/conversations/{id}/{action}"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "{action} accepted");
}

async fn agent_says(app: &TestApp, id: &str, token: &str, text: &str) -> i64 {
    let response = app
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            Some(token),
            json!({"text": text}),
        )
        .await;
    assert_eq!(response.status(), 201, "agent message stored");
    let message: Value = response.json().await.expect("message");
    message["seq"].as_i64().expect("seq")
}

/// Records rule firings and hands the conversation to the queue, as the bot does.
async fn escalate(app: &TestApp, id: &str, seq: i64, rules: &[&str]) {
    fire(app, id, seq, rules).await;
    let escalation = Escalation {
        priority: 1,
        ..Escalation::default()
    };
    app.state
        .chat
        .escalate(parse(id), &escalation)
        .await
        .expect("escalated");
}

async fn fire(app: &TestApp, id: &str, seq: i64, rules: &[&str]) {
    let firings: Vec<(String, String)> = rules
        .iter()
        .map(|r| (r.to_string(), format!("{r} matched")))
        .collect();
    app.state
        .chat
        .record_firings(parse(id), Some(seq), &firings)
        .await
        .expect("firings recorded");
}

fn parse(id: &str) -> ConversationId {
    id.parse().expect("conversation id")
}

/// Moves a conversation and its messages to the scripted timeline (seconds after T0).
async fn pin(
    app: &TestApp,
    id: &str,
    created: i64,
    messages: &[(i64, i64)],
    escalated: Option<i64>,
) {
    let mut sql = format!(
        "UPDATE conversations SET created_at = {} WHERE id = '{id}';",
        at(created)
    );
    if let Some(e) = escalated {
        sql.push_str(&format!(
            "UPDATE conversations SET escalated_at = {} WHERE id = '{id}';",
            at(e)
        ));
    }
    for (seq, time) in messages {
        sql.push_str(&format!(
            "UPDATE messages SET created_at = {} WHERE conversation_id = '{id}' AND seq = {seq};",
            at(*time)
        ));
    }
    app.sql(&sql).await;
}

/// Stores what the AI engine would have concluded about a message.
async fn analyse(app: &TestApp, id: &str, seq: i64, analysis: Value) {
    app.state
        .chat
        .store()
        .set_analysis(id.parse().expect("a conversation id"), seq, &analysis)
        .await
        .expect("analysis stored");
}

fn analysis(intent: &str, label: &str, score: f64) -> Value {
    json!({
        "intent": {"name": intent, "confidence": 0.9, "out_of_scope": false},
        "sentiment": {"label": label, "score": score},
    })
}

async fn analytics_figures_match_a_scripted_scenario(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;

    // A: the bot answers (rated up), an admin closes it; the visitor scores 2, then 5.
    let (mut a, a_id) = conversation(&app).await;
    say(&mut a, "a1", "How do refunds work?").await;
    let answer = app.bot_says(&a_id, "Refunds take 3 to 5 days.").await;
    rate(
        &mut a,
        json!({"type": "rate_answer", "seq": answer, "rating": "up"}),
    )
    .await;
    act(&app, &a_id, "resolve", &admin).await;
    rate(&mut a, json!({"type": "rate_conversation", "score": 2})).await;
    rate(&mut a, json!({"type": "rate_conversation", "score": 5})).await;

    // B: the bot answers (rated up, then down); the visitor asks for a human; two rules fire;
    // Ann takes it from the queue, answers twice and resolves it; the visitor scores 3.
    let (mut b, b_id) = conversation(&app).await;
    say(&mut b, "b1", "My driver was rude").await;
    let answer = app.bot_says(&b_id, "Sorry to hear that.").await;
    rate(
        &mut b,
        json!({"type": "rate_answer", "seq": answer, "rating": "up"}),
    )
    .await;
    rate(
        &mut b,
        json!({"type": "rate_answer", "seq": answer, "rating": "down"}),
    )
    .await;
    let asked = say(&mut b, "b3", "I want a human").await;
    escalate(
        &app,
        &b_id,
        asked,
        &["visitor-asks-for-human", "frustrated-visitor"],
    )
    .await;
    act(&app, &b_id, "claim", &ann).await;
    agent_says(&app, &b_id, &ann, "Hi, I am Ann.").await;
    agent_says(&app, &b_id, &ann, "I have reported the driver.").await;
    act(&app, &b_id, "resolve", &ann).await;
    rate(&mut b, json!({"type": "rate_conversation", "score": 3})).await;

    // C: a safety report, escalated; the rule fires again on the next message; it waits.
    let (mut c, c_id) = conversation(&app).await;
    let report = say(&mut c, "c1", "There was an accident").await;
    escalate(&app, &c_id, report, &["safety"]).await;
    let again = say(&mut c, "c2", "Hello?").await;
    fire(&app, &c_id, again, &["safety"]).await;

    // D: the bot answers (rated up); no analysis; still with the bot.
    let (mut d, d_id) = conversation(&app).await;
    say(&mut d, "d1", "Where is my receipt?").await;
    let answer = app.bot_says(&d_id, "In the app, under Trips.").await;
    rate(
        &mut d,
        json!({"type": "rate_answer", "seq": answer, "rating": "up"}),
    )
    .await;

    // E: Ann takes it straight from the bot (never escalated) and answers.
    let (mut e, e_id) = conversation(&app).await;
    say(&mut e, "e1", "Refund please").await;
    act(&app, &e_id, "claim", &ann).await;
    agent_says(&app, &e_id, &ann, "Looking into it.").await;

    // F: the day before; outside the window.
    let (mut f, f_id) = conversation(&app).await;
    say(&mut f, "f1", "Refund?").await;
    let answer = app.bot_says(&f_id, "Here is how.").await;
    rate(
        &mut f,
        json!({"type": "rate_answer", "seq": answer, "rating": "up"}),
    )
    .await;
    act(&app, &f_id, "resolve", &admin).await;
    rate(&mut f, json!({"type": "rate_conversation", "score": 1})).await;

    pin(&app, &a_id, 0, &[(1, 10), (2, 12)], None).await;
    pin(
        &app,
        &b_id,
        90,
        &[(1, 100), (2, 106), (3, 110), (4, 131), (5, 140)],
        Some(111),
    )
    .await;
    pin(&app, &c_id, 190, &[(1, 200), (2, 210)], Some(201)).await;
    pin(&app, &d_id, 290, &[(1, 300), (2, 301)], None).await;
    pin(&app, &e_id, 390, &[(1, 400), (2, 406)], None).await;
    pin(&app, &f_id, -3600, &[(1, -3590), (2, -3588)], None).await;
    analyse(&app, &a_id, 1, analysis("refund_request", "neutral", 0.0)).await;
    analyse(&app, &a_id, 2, analysis("refund_request", "positive", 1.0)).await;
    analyse(
        &app,
        &b_id,
        1,
        analysis("driver_complaint", "negative", -0.5),
    )
    .await;
    analyse(&app, &b_id, 3, analysis("human_agent", "negative", -1.0)).await;
    analyse(
        &app,
        &c_id,
        1,
        analysis("safety_incident", "negative", -0.75),
    )
    .await;
    let out_of_scope = json!({
        "intent": {"name": null, "confidence": 0.2, "out_of_scope": true},
        "sentiment": {"label": "positive", "score": 0.5},
    });
    analyse(&app, &c_id, 2, out_of_scope).await;
    analyse(&app, &e_id, 1, analysis("refund_request", "neutral", 0.25)).await;
    analyse(&app, &f_id, 1, analysis("refund_request", "positive", 1.0)).await;

    let response = app
        .get(
            "/api/v1/analytics/summary?from=2026-01-05T00:00:00Z&to=2026-01-06T00:00:00Z",
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), 200);
    let summary: Value = response.json().await.expect("summary");
    let durations = |count: u64, mean: f64, median: f64| json!({"count": count, "mean_seconds": mean, "median_seconds": median});
    let rule = |name: &str, firings: u64| json!({"rule": name, "firings": firings, "conversations": 1, "rate": 1.0 / 5.0});
    let expected = json!({
        "from": "2026-01-05T00:00:00Z",
        "to": "2026-01-06T00:00:00Z",
        "conversations": {"total": 5, "bot": 1, "queued": 1, "assigned": 1, "resolved": 2},
        "containment": {"resolved": 2, "contained": 1, "rate": 0.5},
        "escalations": {
            "conversations": 2,
            "rate": 2.0 / 5.0,
            "by_rule": [rule("frustrated-visitor", 1), rule("safety", 2), rule("visitor-asks-for-human", 1)],
        },
        // any: A 2 s (bot), B 6 s (bot), D 1 s (bot), E 6 s (agent); C had no reply.
        "first_response": {
            "any": durations(4, 3.75, 4.0),
            "bot": durations(3, 3.0, 2.0),
            "agent": durations(2, 18.5, 18.5),
        },
        "escalation_to_agent": durations(1, 20.0, 20.0),
        "csat": {"count": 2, "average": 4.0},
        "answers": {"up": 2, "down": 1, "up_share": 2.0 / 3.0},
        "intents": {
            "analysed": 6,
            "out_of_scope": 1,
            "by_name": [
                {"name": "refund_request", "messages": 2},
                {"name": "driver_complaint", "messages": 1},
                {"name": "human_agent", "messages": 1},
                {"name": "safety_incident", "messages": 1},
            ],
        },
        "sentiment": {"analysed": 6, "negative": 3, "neutral": 2, "positive": 1, "mean_score": -0.25},
    });
    assert_eq!(summary, expected);

    let narrow: Value = app
        .get(
            "/api/v1/analytics/summary?from=2026-01-05T00:01:40Z&to=2026-01-05T00:05:00Z",
            Some(&admin),
        )
        .await
        .json()
        .await
        .expect("summary");
    assert_eq!(
        narrow["conversations"],
        json!({"total": 2, "bot": 1, "queued": 1, "assigned": 0, "resolved": 0}),
        "C and D were created in [100 s, 300 s)"
    );
    assert_eq!(narrow["csat"], json!({"count": 0, "average": null}));
    assert_eq!(narrow["containment"]["rate"], Value::Null);

    for (name, expected) in [
        (
            r#"switchboard_feedback_total{kind="answer",rating="up"}"#,
            4.0,
        ),
        (
            r#"switchboard_feedback_total{kind="answer",rating="down"}"#,
            1.0,
        ),
        (
            r#"switchboard_feedback_total{kind="conversation",rating="1"}"#,
            1.0,
        ),
        (
            r#"switchboard_feedback_total{kind="conversation",rating="2"}"#,
            1.0,
        ),
        (
            r#"switchboard_feedback_total{kind="conversation",rating="3"}"#,
            1.0,
        ),
        (
            r#"switchboard_feedback_total{kind="conversation",rating="5"}"#,
            1.0,
        ),
        (r#"switchboard_escalations_total{rule="safety"}"#, 2.0),
        (
            r#"switchboard_escalations_total{rule="visitor-asks-for-human"}"#,
            1.0,
        ),
        (
            r#"switchboard_escalations_total{rule="frustrated-visitor"}"#,
            1.0,
        ),
        ("switchboard_queue_depth", 1.0),
        ("switchboard_queue_wait_seconds_count", 1.0),
        ("switchboard_escalation_to_agent_seconds_count", 1.0),
    ] {
        assert_eq!(app.metric(name).await, expected, "{name}");
    }
}

async fn the_summary_is_for_admins_over_a_valid_window(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;
    let path = "/api/v1/analytics/summary";
    assert_eq!(app.get(path, Some(&ann)).await.status(), 403);
    assert_eq!(app.get(path, None).await.status(), 401);

    let (mut ws, _) = conversation(&app).await;
    say(&mut ws, "x", "hello").await;
    let recent: Value = app
        .get(path, Some(&admin))
        .await
        .json()
        .await
        .expect("summary");
    assert_eq!(
        recent["conversations"]["total"], 1,
        "the default window is the last 7 days"
    );
    assert_eq!(recent["first_response"]["any"]["count"], 0);
    assert_eq!(recent["escalations"]["rate"], 0.0);

    let backwards = app
        .get(
            &format!("{path}?from=2026-01-06T00:00:00Z&to=2026-01-05T00:00:00Z"),
            Some(&admin),
        )
        .await;
    assert_eq!(backwards.status(), 422);
    let body: Value = backwards.json().await.expect("error body");
    assert_eq!(body["code"], "invalid");
    for bad in ["?from=monday", "?to=2026-13-01T00:00:00Z", "?window=7d"] {
        let response = app.get(&format!("{path}{bad}"), Some(&admin)).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}
