//! Cluster mode: two server processes (the real binary) on one PostgreSQL database, clients
//! spread over both. PostgreSQL only, like every `postgres` test: it is reached at
//! TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) and a test fails,
//! never passes, when it cannot be.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::Connection;
use switchboard::domain::{AgentRole, ConversationId};
use switchboard::store::Store;

use crate::helpers::{Backend, TestDatabase, Ws, postgres_base_url};

/// One `switchboard serve` process; killed when dropped.
struct Replica {
    child: Child,
    address: String,
    port: u16,
    http: reqwest::Client,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

impl Replica {
    async fn start(database_url: &str) -> Self {
        let port = free_port();
        let logs = std::env::var("TEST_LOG").ok();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("DATABASE_URL", database_url)
            .env("SWITCHBOARD_CLUSTER__MODE", "on")
            // The relay across replicas is under test; a bot would add its replies.
            .env("SWITCHBOARD_AI__ENABLED", "false")
            .env("SWITCHBOARD_SERVER__PORT", port.to_string())
            .env("SWITCHBOARD_SERVER__WORKERS", "2")
            .env("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_SECS", "1")
            .env("SWITCHBOARD_DATABASE__MAX_CONNECTIONS", "4")
            .env("SWITCHBOARD_WEBSOCKET__MESSAGES_PER_SECOND", "1000")
            .env("SWITCHBOARD_WEBSOCKET__MESSAGE_BURST", "1000")
            .env("SWITCHBOARD_LOG__LEVEL", logs.as_deref().unwrap_or("error"))
            .stdout(Stdio::null())
            .stderr(if logs.is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("the switchboard binary starts");
        let mut replica = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::new(),
        };
        replica.wait_until_ready().await;
        replica
    }

    async fn wait_until_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the replica can be polled") {
                panic!(
                    "replica exited before it was ready: {status} (set TEST_LOG=info to see why)"
                );
            }
            let ready = self
                .http
                .get(format!("{}/ready", self.address))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica on port {} was not ready within 60 s", self.port);
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("POST reaches the replica")
    }

    async fn metric(&self, name: &str) -> f64 {
        let body = self
            .http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    async fn widget(&self, token: Option<&str>, last_seq: Option<i64>) -> (Ws, Value) {
        let mut ws = Ws::connect(&format!("ws://127.0.0.1:{}/ws/widget", self.port)).await;
        ws.send(json!({"type": "hello", "protocol": 1, "token": token, "last_seq": last_seq}))
            .await;
        let welcome = ws.expect("welcome").await;
        (ws, welcome)
    }

    async fn console(&self, token: &str) -> Ws {
        let mut ws = Ws::connect(&format!("ws://127.0.0.1:{}/ws/agent", self.port)).await;
        ws.send(json!({"type": "hello", "protocol": 1, "token": token}))
            .await;
        ws.expect("welcome").await;
        ws
    }
}

/// A fresh PostgreSQL database with two replicas on it, and a store of the test's own.
async fn cluster() -> (TestDatabase, Store, Replica, Replica) {
    let db = TestDatabase::new(Backend::Postgres).await;
    let a = Replica::start(&db.url).await;
    let b = Replica::start(&db.url).await;
    let store = Store::connect(&db.url, 2)
        .await
        .expect("the test's own connection");
    (db, store, a, b)
}

async fn agent(store: &Store, name: &str, role: AgentRole, max_concurrent: i64) -> String {
    let email = format!("{}@example.test", name.to_lowercase());
    switchboard::agents::create_agent(
        store,
        name,
        &email,
        role,
        &["general".into()],
        max_concurrent,
    )
    .await
    .expect("create a test agent")
    .1
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .map(|m| m["seq"].as_i64().expect("messages carry a seq"))
        .collect()
}

/// Fails if a `message` frame arrives within a short wait: a duplicate or a stray.
async fn assert_no_more_messages(ws: &mut Ws) {
    while let Some(frame) = ws.try_next(Duration::from_millis(700)).await {
        assert_ne!(frame["type"], "message", "unexpected extra message {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_one_replica_and_an_agent_on_the_other_talk_both_ways() {
    let (_db, store, a, b) = cluster().await;
    let token = agent(&store, "Grace", AgentRole::Agent, 5).await;
    let mut console = b.console(&token).await;

    let (mut widget, welcome) = a.widget(None, None).await;
    let id = welcome["conversation_id"].as_str().expect("id").to_string();
    let created = console.expect("conversation").await;
    assert_eq!(
        (
            created["event"].as_str(),
            created["conversation"]["id"].as_str()
        ),
        (Some("created"), Some(id.as_str())),
        "B's agents hear of a conversation started on A"
    );

    widget
        .send(json!({"type": "message", "client_id": "v1", "text": "my driver never came"}))
        .await;
    assert_eq!(widget.expect("ack").await["seq"], 1);
    let heard = console.expect("message").await;
    assert_eq!(
        (heard["seq"].as_i64(), heard["text"].as_str()),
        (Some(1), Some("my driver never came"))
    );
    assert_eq!(heard["conversation_id"], id.as_str());

    let claimed = b
        .post(
            &format!("/api/v1/conversations/{id}/claim"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(claimed.status(), 200);
    let state = widget.expect("state").await;
    assert_eq!(state["state"], "assigned", "A's widget sees B's claim");

    let reply = b
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            &token,
            json!({"text": "Sorry about that, let me check"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let got = widget.expect("message").await;
    assert_eq!(
        (got["seq"].as_i64(), got["author"].as_str()),
        (Some(2), Some("agent"))
    );
    assert_eq!(got["text"], "Sorry about that, let me check");
    assert!(
        b.metric("switchboard_cluster_events_received_total").await >= 1.0
            && a.metric("switchboard_cluster_events_received_total").await >= 1.0,
        "each replica counted what it heard from the other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widget_resumes_on_the_other_replica_and_tabs_on_both_stay_in_step() {
    let (_db, _store, a, b) = cluster().await;
    let (mut first, welcome) = a.widget(None, None).await;
    let visitor = welcome["token"].as_str().expect("token").to_string();
    for i in 1..=3 {
        first
            .send(json!({"type": "message", "client_id": format!("c{i}"), "text": format!("on A {i}")}))
            .await;
        assert_eq!(first.expect("ack").await["seq"], i);
    }
    drop(first);

    let (mut on_b, again) = b.widget(Some(&visitor), Some(1)).await;
    assert_eq!(again["conversation_id"], welcome["conversation_id"]);
    let replayed = on_b.messages(2).await;
    assert_eq!(seqs(&replayed), [2, 3]);
    assert_eq!(replayed[1]["text"], "on A 3");

    let (mut on_a, _) = a.widget(Some(&visitor), Some(3)).await;
    on_a.send(json!({"type": "message", "client_id": "c4", "text": "from A"}))
        .await;
    assert_eq!(on_a.expect("ack").await["seq"], 4);
    let at_b = on_b.messages(1).await;
    assert_eq!(
        (seqs(&at_b), at_b[0]["text"].as_str()),
        (vec![4], Some("from A"))
    );
    on_b.send(json!({"type": "message", "client_id": "c5", "text": "from B"}))
        .await;
    assert_eq!(on_b.expect("ack").await["seq"], 5);
    let at_a = on_a.messages(1).await;
    assert_eq!(
        (seqs(&at_a), at_a[0]["text"].as_str()),
        (vec![5], Some("from B"))
    );
    assert_no_more_messages(&mut on_a).await;
    assert_no_more_messages(&mut on_b).await;
}

/// Terminates the backend of `replica`'s listener, waiting for it to exist (it may be
/// reconnecting).
async fn terminate_listener(conn: &mut sqlx::PgConnection, replica: &Replica) {
    let name = format!("switchboard listener pid={}", replica.pid());
    for _ in 0..100 {
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await
        .expect("terminate the listener's backend");
        match killed.as_slice() {
            [] => tokio::time::sleep(Duration::from_millis(50)).await,
            [true] => return,
            other => panic!("a replica has one listener backend, not {other:?}"),
        }
    }
    panic!("no backend named {name:?} within 5 s");
}

/// Messages 1..=150 from a widget on A to a tab and an admin's feed on B. After 50, B's
/// listener is killed and comes straight back; after 100 it is killed and kept out of the
/// database while the last 50 are stored, so only B's recovery can deliver them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replicas_listener_mid_stream_loses_and_repeats_nothing() {
    const TOTAL: i64 = 150;
    let (db, store, a, b) = cluster().await;
    let admin = agent(&store, "Ada", AgentRole::Admin, 5).await;
    let mut console = b.console(&admin).await;
    let (mut sender, welcome) = a.widget(None, None).await;
    let visitor = welcome["token"].as_str().expect("token");
    let (mut tab, _) = b.widget(Some(visitor), None).await;
    let resumes_before = b.metric("switchboard_cluster_listener_resumes_total").await;
    let mut conn = sqlx::PgConnection::connect(&postgres_base_url())
        .await
        .expect("a PostgreSQL connection outside the test's database");
    let (_, database) = db.url.rsplit_once('/').expect("the URL names a database");
    let allow_connections = |allow: bool| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {database} ALLOW_CONNECTIONS {allow}"
        )))
    };

    let mut send_burst = async |range: std::ops::RangeInclusive<i64>| {
        for n in range.clone() {
            let text = format!("message {n}");
            sender
                .send(json!({"type": "message", "client_id": format!("m{n}"), "text": text}))
                .await;
        }
        for n in range {
            assert_eq!(sender.expect("ack").await["seq"], n);
        }
    };
    send_burst(1..=50).await;
    terminate_listener(&mut conn, &b).await;
    send_burst(51..=100).await;
    allow_connections(false)
        .execute(&mut conn)
        .await
        .expect("keep new connections out");
    terminate_listener(&mut conn, &b).await;
    send_burst(101..=TOTAL).await;
    allow_connections(true)
        .execute(&mut conn)
        .await
        .expect("let connections in again");

    let expected: Vec<i64> = (1..=TOTAL).collect();
    assert_eq!(seqs(&tab.messages(TOTAL as usize).await), expected);
    let mut on_feed = Vec::new();
    while on_feed.len() < TOTAL as usize {
        let frame = console.next().await;
        if frame["type"] == "message" {
            on_feed.push(frame);
        }
    }
    assert_eq!(seqs(&on_feed), expected);
    assert_no_more_messages(&mut tab).await;
    assert_no_more_messages(&mut console).await;
    assert!(
        b.metric("switchboard_cluster_listener_resumes_total").await >= resumes_before + 2.0,
        "B's listener reconnected twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_racing_on_two_replicas_give_one_owner_and_respect_capacity() {
    let (_db, store, a, b) = cluster().await;
    let open = |n: usize| {
        let store = &store;
        async move {
            let mut ids = Vec::new();
            for _ in 0..n {
                let visitor = store.create_visitor().await.expect("visitor");
                let c = store
                    .create_conversation(visitor)
                    .await
                    .expect("conversation");
                ids.push(c.id);
            }
            ids
        }
    };
    let claim = |replica: &'static str, id: ConversationId, token: String| {
        let target = if replica == "a" { &a } else { &b };
        async move {
            target
                .post(
                    &format!("/api/v1/conversations/{id}/claim"),
                    &token,
                    json!({}),
                )
                .await
                .status()
                .as_u16()
        }
    };

    let x = agent(&store, "Xavier", AgentRole::Agent, 100).await;
    let y = agent(&store, "Yoko", AgentRole::Agent, 100).await;
    for id in open(8).await {
        let (on_a, on_b) = tokio::join!(claim("a", id, x.clone()), claim("b", id, y.clone()));
        let mut outcomes = [on_a, on_b];
        outcomes.sort_unstable();
        assert_eq!(outcomes, [200, 409], "exactly one claim of {id} wins");
        let owner = store.conversation(id).await.expect("stored").assignee_id;
        assert!(owner.is_some());
    }

    let z = agent(&store, "Zora", AgentRole::Agent, 3).await;
    let ids = open(12).await;
    let outcomes = join_all(
        ids.iter()
            .enumerate()
            .map(|(i, id)| claim(if i % 2 == 0 { "a" } else { "b" }, *id, z.clone())),
    )
    .await;
    assert_eq!(
        outcomes.iter().filter(|s| **s == 200).count(),
        3,
        "an agent with capacity 3 wins 3 claims, whichever replicas they reach: {outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|s| **s == 409).count(), 9);
    let mut held = 0;
    for id in ids {
        let c = store.conversation(id).await.expect("stored");
        held += usize::from(c.assignee_id.is_some());
    }
    assert_eq!(held, 3);
}
