//! Feedback: the widget rates bot answers and resolved conversations; ratings are listed over
//! REST, shown in the conversation view and counted in the metrics.

use serde_json::{Value, json};
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, TestApp, Ws, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    a_visitor_rates_answers_and_the_resolved_conversation,
    ratings_that_cannot_be_taken_get_error_frames_and_the_socket_stays_open,
    agents_list_the_feedback_of_their_conversations_and_admins_all,
);

async fn say(ws: &mut Ws, client_id: &str, text: &str) -> i64 {
    ws.send(json!({"type": "message", "client_id": client_id, "text": text}))
        .await;
    ws.expect("ack").await["seq"].as_i64().expect("seq")
}

async fn rated(ws: &mut Ws, frame: Value) -> Value {
    ws.send(frame).await;
    ws.expect("rated").await
}

async fn resolve(app: &TestApp, id: &str, token: &str) {
    let response = app
        .post(
            &format!("/api/v1/conversations/{id}/resolve"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "resolved");
}

async fn a_visitor_rates_answers_and_the_resolved_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    say(&mut ws, "c1", "How do refunds work?").await;
    let answer = app.bot_says(&id, "Refunds take 3 to 5 days.").await;

    let ack = rated(
        &mut ws,
        json!({"type": "rate_answer", "seq": answer, "rating": "up"}),
    )
    .await;
    assert_eq!(
        ack,
        json!({"type": "rated", "kind": "answer", "seq": answer})
    );
    rated(
        &mut ws,
        json!({"type": "rate_answer", "seq": answer, "rating": "down", "comment": "too slow"}),
    )
    .await;

    ws.send(json!({"type": "rate_conversation", "score": 4}))
        .await;
    assert_eq!(ws.expect_error().await, "not_resolved");
    resolve(&app, &id, &admin).await;
    assert_eq!(ws.expect("state").await["state"], "resolved");
    let ack = rated(&mut ws, json!({"type": "rate_conversation", "score": 2})).await;
    assert_eq!(ack, json!({"type": "rated", "kind": "conversation"}));
    rated(
        &mut ws,
        json!({"type": "rate_conversation", "score": 5, "comment": "  "}),
    )
    .await;

    let view: Value = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&admin))
        .await
        .json()
        .await
        .expect("conversation view");
    let feedback = view["feedback"].as_array().expect("feedback in the view");
    assert_eq!(
        feedback.len(),
        2,
        "a second rating replaces the first: {feedback:?}"
    );
    assert_eq!(feedback[0]["kind"], "answer");
    assert_eq!(feedback[0]["message_seq"], answer);
    assert_eq!(feedback[0]["rating"], "down");
    assert_eq!(feedback[0]["comment"], "too slow");
    assert!(feedback[0]["score"].is_null());
    assert_eq!(feedback[1]["kind"], "conversation");
    assert_eq!(feedback[1]["score"], 5);
    assert!(feedback[1]["rating"].is_null() && feedback[1]["message_seq"].is_null());
    assert!(feedback[1]["comment"].is_null(), "a blank comment is none");

    for (labels, expected) in [
        (r#"kind="answer",rating="up""#, 1.0),
        (r#"kind="answer",rating="down""#, 1.0),
        (r#"kind="conversation",rating="2""#, 1.0),
        (r#"kind="conversation",rating="5""#, 1.0),
        (r#"kind="conversation",rating="4""#, 0.0),
    ] {
        let name = format!("switchboard_feedback_total{{{labels}}}");
        assert_eq!(app.metric(&name).await, expected, "{name}");
    }
}

async fn ratings_that_cannot_be_taken_get_error_frames_and_the_socket_stays_open(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut ws, welcome) = app.visitor().await;
    let id = welcome["conversation_id"].as_str().expect("id").to_owned();
    let own = say(&mut ws, "c1", "Hello").await;
    let answer = app.bot_says(&id, "Hi! How can I help?").await;
    ws.expect("message").await;

    let (mut other, other_welcome) = app.visitor().await;
    let other_id = other_welcome["conversation_id"].as_str().expect("id");
    say(&mut other, "o1", "Hello").await;
    let foreign = app.bot_says(other_id, "Hello other visitor").await;
    other.expect("message").await;
    let too_long = "x".repeat(app.settings.websocket.max_text_bytes + 1);

    for (frame, code) in [
        (
            json!({"type": "rate_answer", "seq": 99, "rating": "up"}),
            "not_found",
        ),
        (
            json!({"type": "rate_answer", "seq": own, "rating": "up"}),
            "not_an_answer",
        ),
        (
            json!({"type": "rate_answer", "seq": answer, "rating": "meh"}),
            "invalid_frame",
        ),
        (
            json!({"type": "rate_answer", "rating": "up"}),
            "invalid_frame",
        ),
        (
            json!({"type": "rate_answer", "seq": answer, "rating": "up", "comment": too_long}),
            "too_large",
        ),
        (
            json!({"type": "rate_conversation", "score": 3}),
            "not_resolved",
        ),
        (
            json!({"type": "rate_conversation", "score": 0}),
            "invalid_frame",
        ),
        (
            json!({"type": "rate_conversation", "score": 6}),
            "invalid_frame",
        ),
        (
            json!({"type": "rate_conversation", "score": 4.5}),
            "invalid_frame",
        ),
    ] {
        ws.send(frame.clone()).await;
        assert_eq!(ws.expect_error().await, code, "{frame}");
    }
    assert_eq!(
        foreign, answer,
        "the other conversation has its own answer at this seq"
    );
    let ack = rated(
        &mut other,
        json!({"type": "rate_answer", "seq": foreign, "rating": "down"}),
    )
    .await;
    assert_eq!(ack["seq"], foreign);

    assert_eq!(say(&mut ws, "c2", "still here").await, answer + 1);
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let view: Value = app
        .get(&format!("/api/v1/conversations/{id}"), Some(&admin))
        .await
        .json()
        .await
        .expect("conversation view");
    assert_eq!(view["feedback"], json!([]), "nothing refused was stored");
}

async fn agents_list_the_feedback_of_their_conversations_and_admins_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.agent("Root", AgentRole::Admin).await;
    let (_, ann) = app.agent("Ann", AgentRole::Agent).await;
    let (_, bob) = app.agent("Bob", AgentRole::Agent).await;

    let mut ids = Vec::new();
    for (client, owner) in [("a", Some(&ann)), ("b", Some(&ann)), ("c", None)] {
        let (mut ws, welcome) = app.visitor().await;
        let id = welcome["conversation_id"].as_str().expect("id").to_owned();
        say(&mut ws, client, "Question").await;
        let seq = app.bot_says(&id, "Answer").await;
        rated(
            &mut ws,
            json!({"type": "rate_answer", "seq": seq, "rating": "up"}),
        )
        .await;
        let closer = match owner {
            Some(token) => {
                let claimed = app
                    .post(
                        &format!("/api/v1/conversations/{id}/claim"),
                        Some(token),
                        json!({}),
                    )
                    .await;
                assert_eq!(claimed.status(), 200);
                token
            }
            None => &admin,
        };
        resolve(&app, &id, closer).await;
        ws.expect("state").await;
        rated(&mut ws, json!({"type": "rate_conversation", "score": 4})).await;
        ids.push(id);
    }

    let list = |token: String, query: &'static str| {
        let app = &app;
        async move {
            let response = app
                .get(&format!("/api/v1/feedback{query}"), Some(&token))
                .await;
            assert_eq!(response.status(), 200, "{query}");
            response.json::<Value>().await.expect("feedback list")
        }
    };
    let all = list(admin.clone(), "").await;
    assert_eq!(all["items"].as_array().expect("items").len(), 6);
    assert!(all["next_cursor"].is_null());
    let newest = &all["items"][0];
    assert_eq!(newest["conversation_id"], ids[2]);
    assert_eq!(newest["kind"], "conversation");

    let anns = list(ann.clone(), "").await;
    let conversations: Vec<&str> = anns["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| f["conversation_id"].as_str().expect("id"))
        .collect();
    assert_eq!(conversations.len(), 4);
    assert!(conversations.iter().all(|c| *c == ids[0] || *c == ids[1]));
    assert_eq!(list(bob.clone(), "").await["items"], json!([]));

    let scores = list(admin.clone(), "?kind=conversation").await;
    assert_eq!(scores["items"].as_array().expect("items").len(), 3);
    assert!(
        scores["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|f| f["score"] == 4)
    );
    let past = list(admin.clone(), "?to=2026-01-01T00:00:00Z").await;
    assert_eq!(past["items"], json!([]));

    let first = list(admin.clone(), "?limit=4").await;
    assert_eq!(first["items"].as_array().expect("items").len(), 4);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let response = app
        .get(
            &format!("/api/v1/feedback?limit=4&cursor={cursor}"),
            Some(&admin),
        )
        .await;
    let second: Value = response.json().await.expect("second page");
    let second = second["items"].as_array().expect("items");
    assert_eq!(second.len(), 2);
    let mut seen: Vec<&Value> = first["items"].as_array().expect("items").iter().collect();
    seen.extend(second);
    let all_items: Vec<&Value> = all["items"].as_array().expect("items").iter().collect();
    assert_eq!(
        seen, all_items,
        "pages follow each other without gap or overlap"
    );

    for bad in ["?cursor=nope", "?kind=mood", "?from=yesterday", "?limit=0"] {
        let response = app
            .get(&format!("/api/v1/feedback{bad}"), Some(&admin))
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(app.get("/api/v1/feedback", None).await.status(), 401);
}
