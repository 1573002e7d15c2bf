//! Builds the application from its settings: opens and migrates the database, starts the hub
//! (and, in cluster mode, the listener for the other replicas), binds the listener (port 0
//! works), and runs the HTTP server until it is stopped. The binary and the tests both start
//! the server through [`Application::build`](crate::startup::Application::build).

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Arc;

use actix_http::{Extensions, HttpService};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{App, web};

use crate::ai::retrieval::Passage;
use crate::ai::{AiError, Embedding, Engine, StoredEmbeddings, passages};
use crate::auth::{VisitorTokens, generate_secret};
use crate::automation::{Bot, Desk, RuleBook, RuleBookError};
use crate::chat::Chat;
use crate::cluster::{self, PgBackplane, ReplicaId};
use crate::config::Settings;
use crate::drain::Drain;
use crate::hub::HubHandle;
use crate::kb::KnowledgeBase;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Key under which the generated visitor-token secret is kept in the database.
const VISITOR_SECRET_KEY: &str = "visitor_token_secret";

/// Everything a request handler or socket task may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub chat: Chat,
    pub desk: Desk,
    /// The bot, when the AI engine is enabled.
    pub bot: Option<Bot>,
    pub visitor_tokens: VisitorTokens,
    pub metrics: Metrics,
    pub drain: Drain,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    #[error("cannot load the escalation rules")]
    Rules(#[from] RuleBookError),
    #[error("cannot read the knowledge base")]
    KnowledgeBase(#[from] crate::kb::KbError),
    #[error("cannot load the AI engine")]
    Ai(#[from] AiError),
    #[error("cannot bind {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Opens the database, applies migrations and binds; serving starts with
    /// [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let engine = if settings.ai.enabled {
            Some(load_engine(&settings).await?)
        } else {
            None
        };
        Self::build_with(settings, engine).await
    }

    /// Like [`Self::build`], with an engine loaded beforehand (tests share one), or none.
    pub async fn build_with(
        settings: Settings,
        engine: Option<Arc<Engine>>,
    ) -> Result<Self, StartError> {
        let replica = settings.is_clustered().then(ReplicaId::random);
        let store = Store::connect_as(
            &settings.database.url,
            settings.database.max_connections,
            replica.clone(),
        )
        .await?;
        store.migrate().await?;
        let secret = match &settings.auth.visitor_secret {
            Some(secret) => secret.clone(),
            None => {
                store
                    .setting_or_insert(VISITOR_SECRET_KEY, &generate_secret())
                    .await?
            }
        };
        let metrics = Metrics::new();
        if store.sqlite_log().is_some() {
            metrics.track_sqlite();
        }
        let hub = HubHandle::new(metrics.slow_consumer_evictions.clone());
        let rules = RuleBook::load(store.clone()).await?;
        let chat = Chat::new(store, hub, metrics.clone());
        if let Some(replica) = replica {
            tracing::info!(%replica, "cluster mode: listening for the other replicas");
            let backplane = PgBackplane::new(&settings.database.url, replica)
                .map_err(|e| StartError::Store(e.into()))?;
            cluster::start(backplane, chat.clone(), metrics.clone()).await;
        }
        if let Some(engine) = &engine {
            tokio::spawn(crate::knowledge::follow(
                chat.store().clone(),
                engine.clone(),
            ));
        }
        let desk = Desk::new(chat.clone(), rules);
        let state = AppState {
            bot: engine.map(|e| Bot::new(e, chat.clone(), desk.clone(), metrics.clone())),
            desk,
            chat,
            visitor_tokens: VisitorTokens::new(secret.as_bytes()),
            metrics,
            drain: Drain::new(),
            settings: Arc::new(settings),
        };

        let address = format!(
            "{}:{}",
            state.settings.server.host, state.settings.server.port
        );
        let listener = TcpListener::bind(&address).map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { address, source })?
            .port();
        if state.settings.retention.days > 0 {
            tokio::spawn(purge_periodically(state.clone()));
        }
        let server = serve(listener, state.clone())?;
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that can stop the server from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.state.chat.store().close().await;
        result
    }
}

/// The knowledge base in the database, its source of truth; on a first start (nothing
/// imported yet) the folder `ai.knowledge_base` is imported first.
async fn knowledge_base(store: &Store, settings: &Settings) -> Result<KnowledgeBase, StartError> {
    Ok(match store.knowledge().await? {
        Some(kb) => kb,
        None => {
            let kb = KnowledgeBase::read(&settings.ai.knowledge_base)?;
            let report = store.import_knowledge(&kb, |_, _| {}).await?;
            tracing::info!(?report, "imported the knowledge base on first start");
            kb
        }
    })
}

/// The passage embeddings stored in the database, by key.
async fn stored_embeddings(store: &Store) -> Result<StoredEmbeddings, StoreError> {
    Ok(store
        .passage_embeddings()
        .await?
        .into_iter()
        .filter_map(|(key, values)| Some((key, Embedding::from_stored(values)?)))
        .collect())
}

/// Reads the knowledge base and the stored passage embeddings, loads the engine on a blocking
/// thread (a first start on new content trains the intent head and embeds the passages:
/// seconds; later starts embed only passages whose text changed), then stores the new
/// embeddings and drops those of passages that are gone.
pub async fn load_engine(settings: &Settings) -> Result<Arc<Engine>, StartError> {
    let store = Store::connect(&settings.database.url, 1).await?;
    store.migrate().await?;
    let kb = knowledge_base(&store, settings).await?;
    let stored = stored_embeddings(&store).await?;
    let ai = settings.ai.clone();
    let (engine, fresh) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (engine, fresh) = Engine::load(&ai.engine(), &kb, &stored)?;
        tracing::info!(
            secs = started.elapsed().as_secs_f64(),
            articles = kb.articles.len(),
            intents = kb.intents.len(),
            passages = engine.load_stats().passages,
            embedded = engine.load_stats().embedded,
            "AI engine ready"
        );
        let keep: HashSet<String> = passages(&kb).iter().map(Passage::embedding_key).collect();
        Ok::<_, StartError>((engine, (fresh, keep)))
    })
    .await
    .map_err(|e| AiError::Threads(Box::new(e)))??;
    let (fresh, keep) = fresh;
    crate::knowledge::store_embeddings(&store, fresh, keep).await;
    store.close().await;
    Ok(Arc::new(engine))
}

/// The HTTP server: actix-web's app for requests, and [`crate::ws::upgrade`] for WebSocket
/// upgrades, which take their connection out of the HTTP layer.
fn serve(listener: TcpListener, state: AppState) -> Result<Server, StartError> {
    let settings = state.settings.clone();
    let state = Arc::new(state);
    let mut server = Server::build()
        .listen("switchboard", listener, move || {
            let data = web::Data::from(state.clone());
            let app = App::new()
                .app_data(data)
                .wrap(from_fn(crate::http::track))
                .configure(crate::ws::routes)
                .configure(crate::http::routes)
                .default_service(web::to(crate::http::not_found))
                .into_factory()
                .map_err(|e| e.error_response());
            let state = state.clone();
            HttpService::build()
                // Chat frames are small and latency is the point: without TCP_NODELAY, a frame
                // written while the client delays its ACK of the previous one (an `ack`) waits
                // about 40 ms.
                .on_connect_ext(|tcp: &TcpStream, _: &mut Extensions| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                })
                .upgrade(fn_service(move |(req, framed)| {
                    crate::ws::upgrade(state.clone(), req, framed)
                }))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .map_err(|source| StartError::Bind {
            address: "listener".into(),
            source,
        })?
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .disable_signals();
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.run())
}

/// The retention job: deletes what is older than `retention.days`, and audits each purge.
async fn purge_periodically(state: AppState) {
    let retention = &state.settings.retention;
    let keep_ms = i64::from(retention.days) * 24 * 60 * 60 * 1000;
    let mut every = tokio::time::interval(std::time::Duration::from_secs(
        retention.purge_interval_secs,
    ));
    loop {
        every.tick().await;
        let store = state.chat.store();
        let cutoff = chrono::Utc::now().timestamp_millis() - keep_ms;
        match store.purge_before(cutoff).await {
            Ok(removed) if removed == Default::default() => {}
            Ok(removed) => {
                tracing::info!(?removed, "retention purge");
                let detail = serde_json::json!({ "removed": removed, "cutoff_ms": cutoff });
                if let Err(e) = store.audit("system", "purge", None, detail).await {
                    tracing::error!(error = ?e, "could not audit a purge");
                }
            }
            Err(e) => tracing::error!(error = ?e, "retention purge failed"),
        }
    }
}
