//! One repository suite, run against both backends.

use switchboard::domain::{
    AgentRole, AgentStatus, AuthorRole, ClientId, ConversationState, MessageText,
};
use switchboard::store::{Appended, ConversationFilter, NewMessage, Store, StoreError};

use crate::helpers::{Backend, TestDatabase};
use crate::on_both_backends;

on_both_backends!(
    migrations_apply_once_and_report_ready,
    messages_get_consecutive_seq_and_dedupe,
    claims_are_exclusive_and_respect_capacity,
    agents_tokens_and_settings,
    concurrent_appends_across_conversations_are_batched_correctly,
    batched_messages_keep_every_character_and_field,
    a_batch_numbers_only_the_messages_it_stores,
);

async fn store(backend: Backend) -> (Store, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url, 4).await.expect("connect");
    assert!(!store.is_ready().await, "an empty database is not ready");
    store.migrate().await.expect("migrate");
    (store, db)
}

fn text(s: &str) -> MessageText {
    MessageText::parse(s.to_string(), 4096).expect("valid text")
}

async fn migrations_apply_once_and_report_ready(backend: Backend) {
    let (store, _db) = store(backend).await;
    assert!(store.is_ready().await);
    assert_eq!(store.sqlite_log().is_some(), backend == Backend::Sqlite);
    store.migrate().await.expect("migrating twice is a no-op");
    assert!(store.is_ready().await);
}

async fn messages_get_consecutive_seq_and_dedupe(backend: Backend) {
    let (store, _db) = store(backend).await;
    let visitor = store.create_visitor().await.expect("visitor");
    let conversation = store
        .create_conversation(visitor)
        .await
        .expect("conversation");
    assert_eq!(conversation.state, ConversationState::Bot);
    let new = |client: &str, t: &str| NewMessage {
        conversation_id: conversation.id,
        author: AuthorRole::Visitor,
        author_id: Some(visitor.to_string()),
        text: text(t),
        client_id: Some(ClientId::parse(client.to_string()).expect("client id")),
        analysis: None,
    };
    for i in 1..=5 {
        let appended = store
            .append_message(&new(&format!("c{i}"), &format!("m{i}")))
            .await
            .expect("append");
        assert!(
            matches!(&appended, Appended::New { message, .. } if message.seq == i),
            "{appended:?}"
        );
    }
    let dup = store
        .append_message(&new("c3", "different text"))
        .await
        .expect("append");
    assert!(
        matches!(&dup, Appended::Duplicate(m) if m.seq == 3 && m.text == "m3"),
        "{dup:?}"
    );

    let after = store
        .messages_after(conversation.id, 2, 10)
        .await
        .expect("list");
    assert_eq!(
        after.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        store
            .messages_after(conversation.id, 0, 2)
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        store
            .conversation(conversation.id)
            .await
            .expect("get")
            .last_seq,
        5
    );

    let other = store
        .create_conversation(visitor)
        .await
        .expect("second conversation");
    let in_other = NewMessage {
        conversation_id: other.id,
        ..new("c3", "same client id elsewhere")
    };
    assert!(
        matches!(store.append_message(&in_other).await.expect("append"), Appended::New { message, .. } if message.seq == 1)
    );
    assert_eq!(
        store
            .latest_conversation(visitor)
            .await
            .expect("latest")
            .map(|c| c.id),
        Some(other.id)
    );

    store
        .resolve_conversation(conversation.id)
        .await
        .expect("resolve");
    assert!(
        matches!(
            store.append_message(&new("c6", "back again")).await,
            Err(StoreError::Resolved)
        ),
        "a visitor cannot write into a resolved conversation until it is reopened"
    );
    store
        .reopen_for_visitor(conversation.id)
        .await
        .expect("reopen");
    let back = store
        .append_message(&new("c6", "back again"))
        .await
        .expect("append");
    assert!(
        matches!(&back, Appended::New { message, owner: None } if message.seq == 6),
        "{back:?}"
    );

    let missing = NewMessage {
        conversation_id: switchboard::domain::ConversationId::new(),
        ..new("z", "nowhere")
    };
    assert!(matches!(
        store.append_message(&missing).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn claims_are_exclusive_and_respect_capacity(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (agent, _) = switchboard::agents::create_agent(
        &store,
        "Solo",
        "solo@example.test",
        AgentRole::Agent,
        &[],
        1,
    )
    .await
    .expect("agent");
    let visitor = store.create_visitor().await.expect("visitor");
    let first = store
        .create_conversation(visitor)
        .await
        .expect("conversation");
    let second = store
        .create_conversation(visitor)
        .await
        .expect("conversation");

    let claimed = store
        .claim_conversation(first.id, agent.id)
        .await
        .expect("claim");
    assert_eq!(
        (claimed.state, claimed.assignee_id),
        (ConversationState::Assigned, Some(agent.id))
    );
    assert!(matches!(
        store.claim_conversation(first.id, agent.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        matches!(store.claim_conversation(second.id, agent.id).await, Err(StoreError::Conflict(m)) if m.contains("capacity")),
        "capacity 1 is full"
    );
    store.resolve_conversation(first.id).await.expect("resolve");
    store
        .claim_conversation(second.id, agent.id)
        .await
        .expect("capacity freed by resolving");

    let filter = ConversationFilter {
        state: Some(ConversationState::Resolved),
        ..Default::default()
    };
    let page = store
        .list_conversations(&filter, None, 10)
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![first.id]
    );
}

async fn agents_tokens_and_settings(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (agent, token) = switchboard::agents::create_agent(
        &store,
        "Tok",
        "tok@example.test",
        AgentRole::Admin,
        &["billing".into()],
        4,
    )
    .await
    .expect("agent");
    let found = store
        .agent_by_token(&switchboard::auth::hash_api_token(&token))
        .await
        .expect("lookup");
    assert_eq!(found.map(|a| a.id), Some(agent.id));
    assert_eq!(
        store
            .agent_by_token("0".repeat(64).as_str())
            .await
            .expect("lookup"),
        None
    );
    let updated = store
        .set_agent_status(agent.id, AgentStatus::Away)
        .await
        .expect("status");
    assert_eq!(updated.status, AgentStatus::Away);
    assert_eq!(store.agents().await.expect("list").len(), 1);

    assert_eq!(
        store
            .setting_or_insert("k", "first")
            .await
            .expect("setting"),
        "first"
    );
    assert_eq!(
        store
            .setting_or_insert("k", "second")
            .await
            .expect("setting"),
        "first",
        "the first value sticks"
    );
}

async fn concurrent_appends_across_conversations_are_batched_correctly(backend: Backend) {
    const CONVERSATIONS: usize = 40;
    const EACH: i64 = 10;
    let (store, _db) = store(backend).await;
    let visitor = store.create_visitor().await.expect("visitor");
    let mut writers = Vec::new();
    for c in 0..CONVERSATIONS {
        let conversation = store
            .create_conversation(visitor)
            .await
            .expect("conversation");
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 1..=EACH {
                let new = NewMessage {
                    conversation_id: conversation.id,
                    author: AuthorRole::Agent,
                    author_id: None,
                    text: text(&format!("conversation {c} message {i}")),
                    client_id: Some(ClientId::parse(format!("m{i}")).expect("client id")),
                    analysis: None,
                };
                let appended = store.append_message(&new).await.expect("append");
                assert!(
                    matches!(&appended, Appended::New { message, .. } if message.seq == i),
                    "{appended:?}"
                );
            }
            let stored = store
                .messages_after(conversation.id, 0, 100)
                .await
                .expect("list");
            assert_eq!(
                stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
                (1..=EACH).collect::<Vec<_>>()
            );
            assert!(
                stored
                    .iter()
                    .all(|m| m.text.starts_with(&format!("conversation {c} ")))
            );
        }));
    }
    for w in writers {
        w.await.expect("writer task");
    }
}

/// The writer passes a batch to the database as JSON: whatever a message holds comes back as
/// it was sent, byte for byte, with its author id, client id and analysis.
async fn batched_messages_keep_every_character_and_field(backend: Backend) {
    const TEXTS: [&str; 8] = [
        "quotes \" and ' and \\ backslashes \\\"",
        "{\"type\":\"message\",\"seq\":[1,2]}",
        "line one\nline two\ttab\r\n",
        "emoji 🚕🙂 and a flag 🇳🇱",
        "ركبت سيارة أجرة البارحة",
        "Ünïcödé — “typographic” ‘quotes’ … \u{2028}\u{7f}",
        "'); DROP TABLE messages; --",
        "$1 $2 ?3 :name @x",
    ];
    let (store, _db) = store(backend).await;
    let visitor = store.create_visitor().await.expect("visitor");
    let mut writers = Vec::new();
    for (i, t) in TEXTS.iter().enumerate() {
        let conversation = store
            .create_conversation(visitor)
            .await
            .expect("conversation");
        let new = NewMessage {
            conversation_id: conversation.id,
            author: AuthorRole::Visitor,
            author_id: Some(format!("visitor-{i}")),
            text: text(t),
            client_id: Some(ClientId::parse(format!("c{i}")).expect("client id")),
            analysis: Some(serde_json::json!({"intent": {"name": t, "confidence": 0.5}})),
        };
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            store.append_message(&new).await.expect("append");
            new
        }));
    }
    for w in writers {
        let new = w.await.expect("writer task");
        let stored = store
            .messages_after(new.conversation_id, 0, 10)
            .await
            .expect("list");
        assert_eq!(stored.len(), 1);
        let m = &stored[0];
        assert_eq!((m.seq, m.text.as_str()), (1, new.text.as_str()));
        assert_eq!(m.author_id, new.author_id);
        assert_eq!(
            m.client_id.as_deref(),
            new.client_id.as_ref().map(|c| c.as_str())
        );
        assert_eq!(m.analysis, new.analysis);
    }
}

/// The writer's UPDATE numbers the conversations whose message it may store and its INSERT
/// stores exactly those messages under those numbers: in batches that mix open and resolved
/// conversations, a visitor's message to a resolved one is refused and takes no number, while
/// an agent's message to it and everything sent to the open ones are stored, each with its
/// own author, text and the next `seq`.
async fn a_batch_numbers_only_the_messages_it_stores(backend: Backend) {
    const CONVERSATIONS: usize = 12;
    let (store, _db) = store(backend).await;
    let visitor = store.create_visitor().await.expect("visitor");
    let mut conversations = Vec::new();
    for i in 0..CONVERSATIONS {
        let conversation = store
            .create_conversation(visitor)
            .await
            .expect("conversation");
        let resolved = i % 2 == 1;
        if resolved {
            store
                .resolve_conversation(conversation.id)
                .await
                .expect("resolve");
        }
        conversations.push((conversation.id, resolved));
    }
    let send = |id, author, label: String| {
        let store = store.clone();
        tokio::spawn(async move {
            let new = NewMessage {
                conversation_id: id,
                author,
                author_id: None,
                text: text(&label),
                client_id: Some(ClientId::parse(label.replace(' ', "-")).expect("client id")),
                analysis: None,
            };
            store.append_message(&new).await
        })
    };

    let visitors: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(i, &(id, _))| send(id, AuthorRole::Visitor, format!("visitor {i}")))
        .collect();
    for ((_, resolved), sent) in conversations.iter().zip(visitors) {
        let outcome = sent.await.expect("sender task");
        if *resolved {
            assert!(matches!(outcome, Err(StoreError::Resolved)), "{outcome:?}");
        } else {
            assert!(
                matches!(&outcome, Ok(Appended::New { message, .. }) if message.seq == 1),
                "{outcome:?}"
            );
        }
    }

    let agents: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(i, &(id, _))| send(id, AuthorRole::Agent, format!("agent {i}")))
        .collect();
    for ((id, resolved), sent) in conversations.iter().zip(agents) {
        let expected = if *resolved { 1 } else { 2 };
        let outcome = sent.await.expect("sender task");
        assert!(
            matches!(&outcome, Ok(Appended::New { message, .. }) if message.seq == expected),
            "{outcome:?}"
        );
        let stored = store.messages_after(*id, -1, 10).await.expect("list");
        let got: Vec<(i64, AuthorRole, &str)> = stored
            .iter()
            .map(|m| (m.seq, m.author, m.text.as_str()))
            .collect();
        let i = conversations
            .iter()
            .position(|(c, _)| c == id)
            .expect("ours");
        let (visitor_text, agent_text) = (format!("visitor {i}"), format!("agent {i}"));
        let mut want = vec![(1, AuthorRole::Visitor, visitor_text.as_str())];
        if *resolved {
            want.clear();
        }
        want.push((expected, AuthorRole::Agent, agent_text.as_str()));
        assert_eq!(got, want);
        let conversation = store.conversation(*id).await.expect("conversation");
        assert_eq!(conversation.last_seq, expected);
    }
}

/// SQLite: the writer never checkpoints (that would stall a COMMIT); a background checkpointer
/// copies the log into the database file while messages keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_is_checkpointed_off_the_writer() {
    let (store, db) = store(Backend::Sqlite).await;
    let path = db
        .url
        .trim_start_matches("sqlite://")
        .trim_end_matches("?mode=rwc")
        .to_string();
    let size = || std::fs::metadata(&path).expect("the database file").len();
    let before = size();
    let visitor = store.create_visitor().await.expect("visitor");
    let conversation = store
        .create_conversation(visitor)
        .await
        .expect("conversation");
    for i in 0..2_000 {
        let new = NewMessage {
            conversation_id: conversation.id,
            author: AuthorRole::Visitor,
            author_id: None,
            text: text(&format!("message {i} {}", "x".repeat(200))),
            client_id: None,
            analysis: None,
        };
        store.append_message(&new).await.expect("append");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() < before + 256 * 1024 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        size() >= before + 256 * 1024,
        "about 450 KB of messages reached the database file ({before} → {} bytes) with the store open",
        size()
    );
    let (pages, failures) = store.sqlite_log().expect("SQLite reports its log");
    assert!(pages > 0, "the checkpoints saw the log's {pages} pages");
    assert_eq!(failures, 0);
}
