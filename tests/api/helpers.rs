//! The test harness: boots the real server on a random port with a fresh database (a temp
//! SQLite file, or a new PostgreSQL database), and speaks to it over real sockets.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use switchboard::ai::Engine;
use switchboard::config::Settings;
use switchboard::domain::{Agent, AgentRole, AuthorRole, MessageText};
use switchboard::startup::{AppState, Application};
use switchboard::store::NewMessage;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects before failing.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);
/// How long a test waits for an HTTP response: a server that never answers fails the test
/// instead of hanging the suite.
pub const REQUEST_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for each scenario `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )+
        }
    };
}

/// The PostgreSQL database tests connect to first, to create their own.
pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database for one test, and the URL to reach it.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir for the test database");
                let url = format!("sqlite://{}/switchboard.db?mode=rwc", dir.path().display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let base = postgres_base_url();
                let name = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&base)
                    .await
                    .expect("PostgreSQL must be reachable at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create a test database");
                let (prefix, _) = base
                    .rsplit_once('/')
                    .expect("database URL names a database");
                Self {
                    url: format!("{prefix}/{name}"),
                    _dir: None,
                }
            }
        }
    }
}

pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.shutdown_timeout_secs = 1;
    settings.database.url = database_url.to_string();
    settings.database.max_connections = 5;
    settings.websocket.messages_per_second = 1000;
    settings.websocket.message_burst = 1000;
    settings.ai.enabled = false;
    settings.ai.cache_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cache");
    // The search index in RAM: tests run side by side, and each has its own database.
    settings.ai.index_dir = std::path::PathBuf::new();
    settings
}

/// One engine for the whole test binary: loading it takes a second or two (longer on a first
/// run, which trains the intent head), and it holds no per-test state.
async fn shared_engine(settings: &Settings) -> Arc<Engine> {
    static ENGINE: tokio::sync::OnceCell<Arc<Engine>> = tokio::sync::OnceCell::const_new();
    ENGINE
        .get_or_init(|| async {
            switchboard::startup::load_engine(settings)
                .await
                .expect("the AI engine loads from models/ and knowledge-base/")
        })
        .await
        .clone()
}

/// A server with the bot on: the real engine on the demo knowledge base.
pub async fn spawn_bot_app(backend: Backend) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let mut settings = test_settings(&db.url);
    settings.ai.enabled = true;
    let engine = shared_engine(&settings).await;
    start_with(db, settings, Some(engine)).await
}

/// A server with the bot on and an engine of its own, loaded from this test's database, with
/// the search index and the intent head's cache under `dir`: for tests that change the
/// engine's knowledge base.
pub async fn spawn_bot_app_with_own_engine(backend: Backend, dir: &std::path::Path) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let mut settings = test_settings(&db.url);
    settings.ai.enabled = true;
    settings.ai.index_dir = dir.join("index");
    settings.ai.cache_dir = dir.join("cache");
    let engine = switchboard::startup::load_engine(&settings)
        .await
        .expect("the AI engine loads");
    start_with(db, settings, Some(engine)).await
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub state: AppState,
    pub http: reqwest::Client,
    pub db: TestDatabase,
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::new(backend).await;
    let mut settings = test_settings(&db.url);
    tweak(&mut settings);
    start(db, settings).await
}

/// Server logs stay quiet unless `TEST_LOG` is set (to a filter such as `debug`).
fn init_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}

async fn start(db: TestDatabase, settings: Settings) -> TestApp {
    let engine = if settings.ai.enabled {
        Some(shared_engine(&settings).await)
    } else {
        None
    };
    start_with(db, settings, engine).await
}

async fn start_with(db: TestDatabase, settings: Settings, engine: Option<Arc<Engine>>) -> TestApp {
    init_logs();
    let app = Application::build_with(settings.clone(), engine)
        .await
        .expect("the server starts");
    let port = app.port();
    let state = app.state().clone();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        port,
        address: format!("http://127.0.0.1:{port}"),
        state,
        http: reqwest::Client::builder()
            .timeout(REQUEST_WAIT)
            .build()
            .expect("an HTTP client"),
        db,
        settings,
        handle,
    }
}

impl TestApp {
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.handle.clone()
    }

    /// Stops this server and starts a new one on the same database (a restart).
    pub async fn restart(self) -> TestApp {
        self.handle.stop(true).await;
        start(self.db, self.settings).await
    }

    /// The bot's engine, for a test that asks it directly what it understands.
    pub fn engine(&self) -> Arc<Engine> {
        let bot = self.state.bot.as_ref().expect("the bot is on");
        bot.engine().clone()
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    pub async fn agent(&self, name: &str, role: AgentRole) -> (Agent, String) {
        self.agent_with(name, role, &["general"], 5).await
    }

    pub async fn agent_with(
        &self,
        name: &str,
        role: AgentRole,
        skills: &[&str],
        max_concurrent: i64,
    ) -> (Agent, String) {
        let skills: Vec<String> = skills.iter().map(|s| s.to_string()).collect();
        switchboard::agents::create_agent(
            self.state.chat.store(),
            name,
            &format!("{}@example.test", name.to_lowercase().replace(' ', ".")),
            role,
            &skills,
            max_concurrent,
        )
        .await
        .expect("create a test agent")
    }

    /// Sets an agent's status over the API, as the console does.
    pub async fn set_status(&self, token: &str, status: &str) {
        let response = self
            .put(
                "/api/v1/agents/me/status",
                Some(token),
                serde_json::json!({"status": status}),
            )
            .await;
        assert_eq!(response.status(), 200, "status change accepted");
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET reaches the server")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.address))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("POST reaches the server")
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.http.put(format!("{}{path}", self.address)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("PUT reaches the server")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.delete(format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("DELETE reaches the server")
    }

    /// A widget that said hello as a new visitor; returns it with its welcome frame.
    pub async fn visitor(&self) -> (Ws, Value) {
        let mut ws = Ws::connect(&self.ws_url("/ws/widget")).await;
        ws.send(json!({"type": "hello", "protocol": 1, "token": null, "last_seq": null}))
            .await;
        let welcome = ws.expect("welcome").await;
        (ws, welcome)
    }

    /// A widget resuming with `token`, having seen up to `last_seq`.
    pub async fn resume(&self, token: &str, last_seq: Option<i64>) -> (Ws, Value) {
        let mut ws = Ws::connect(&self.ws_url("/ws/widget")).await;
        ws.send(json!({"type": "hello", "protocol": 1, "token": token, "last_seq": last_seq}))
            .await;
        let welcome = ws.expect("welcome").await;
        (ws, welcome)
    }

    /// An agent console feed, after its welcome.
    pub async fn console(&self, token: &str) -> Ws {
        let mut ws = Ws::connect(&self.ws_url("/ws/agent")).await;
        ws.send(json!({"type": "hello", "protocol": 1, "token": token}))
            .await;
        ws.expect("welcome").await;
        ws
    }

    /// Stores a bot message in a conversation, as the bot does, through the library's `Chat`;
    /// returns its `seq`.
    pub async fn bot_says(&self, conversation: &str, text: &str) -> i64 {
        let new = NewMessage {
            conversation_id: conversation.parse().expect("a conversation id"),
            author: AuthorRole::Bot,
            author_id: None,
            text: MessageText::parse(text.into(), 4096).expect("valid bot text"),
            client_id: None,
            analysis: None,
        };
        self.state
            .chat
            .post(new, None)
            .await
            .expect("bot message stored")
            .message()
            .seq
    }

    /// Runs SQL straight on the test database: to pin event times to a scripted timeline.
    pub async fn sql(&self, statements: &str) {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db.url)
            .await
            .expect("connect to the test database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statements.to_owned()))
            .execute(&mut conn)
            .await
            .expect("test SQL runs");
    }

    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let body = self
            .get("/metrics", None)
            .await
            .text()
            .await
            .expect("metrics body");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name_and_labels)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

/// A WebSocket client that reads JSON frames.
pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    WithoutCloseFrame,
}

impl Ws {
    pub async fn connect(url: &str) -> Self {
        let (inner, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket upgrade succeeds");
        Self { inner }
    }

    /// Tries an upgrade; on refusal returns the HTTP status.
    pub async fn try_connect(url: &str) -> Result<Self, u16> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((inner, _)) => Ok(Self { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
        }
    }

    /// Connects with a tiny receive buffer, so a client that stops reading backs up quickly.
    pub async fn connect_small_buffer(port: u16, path: &str) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("set receive buffer");
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (inner, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket upgrade succeeds");
        Self { inner }
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(WsMessage::text(text))
            .await
            .expect("frame sent");
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        self.inner.send(message).await.expect("frame sent");
    }

    /// The next JSON frame; panics on close or timeout.
    pub async fn next(&mut self) -> Value {
        self.try_next(FRAME_WAIT)
            .await
            .expect("a frame arrives in time")
    }

    /// The next JSON frame within `wait`, or None if none came.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let item = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??;
            match item.expect("socket stays healthy") {
                WsMessage::Text(t) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"));
                }
                WsMessage::Close(c) => panic!("socket closed unexpectedly: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Reads frames until one of type `kind`, which it returns.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
            assert_ne!(
                frame["type"], "error",
                "unexpected error frame while waiting for {kind}: {frame}"
            );
        }
    }

    /// The code of the next frame, which must be an error frame.
    pub async fn expect_error(&mut self) -> String {
        let frame = self.next().await;
        assert_eq!(
            frame["type"], "error",
            "expected an error frame, got {frame}"
        );
        frame["code"]
            .as_str()
            .expect("error frames carry a code")
            .to_string()
    }

    /// Reads one item: Some(true) for a `message` frame, Some(false) for any other frame, None
    /// once the socket has ended.
    pub async fn try_next_raw(&mut self) -> Option<bool> {
        match self.inner.next().await? {
            Ok(WsMessage::Text(t)) => Some(t.contains("\"type\":\"message\"")),
            Ok(WsMessage::Close(_)) | Err(_) => None,
            Ok(_) => Some(false),
        }
    }

    /// The next JSON frame, or how the socket ended.
    pub async fn next_or_close(&mut self) -> Result<Value, Closed> {
        loop {
            let item = tokio::time::timeout(FRAME_WAIT, self.inner.next())
                .await
                .expect("a frame or a close in time");
            match item {
                None | Some(Err(_)) => return Err(Closed::WithoutCloseFrame),
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return Err(Closed::Code(u16::from(frame.code)));
                }
                Some(Ok(WsMessage::Close(None))) => {
                    return Err(Closed::Code(u16::from(CloseCode::Status)));
                }
                Some(Ok(WsMessage::Text(t))) => {
                    return Ok(serde_json::from_str(&t).expect("server sends JSON"));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until the socket ends; returns how it ended.
    pub async fn closed(&mut self) -> Closed {
        let deadline = tokio::time::Instant::now() + FRAME_WAIT * 3;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => panic!("socket did not close in time"),
                Ok(None) | Ok(Some(Err(_))) => return Closed::WithoutCloseFrame,
                Ok(Some(Ok(WsMessage::Close(Some(frame))))) => {
                    return Closed::Code(u16::from(frame.code));
                }
                Ok(Some(Ok(WsMessage::Close(None)))) => {
                    return Closed::Code(u16::from(CloseCode::Status));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Collects frames of type `message` until `n` have arrived.
    pub async fn messages(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let frame = self.next().await;
            if frame["type"] == "message" {
                out.push(frame);
            }
        }
        out
    }
}
