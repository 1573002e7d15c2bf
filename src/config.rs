//! One typed configuration tree: defaults, then an optional TOML file, then `SWITCHBOARD_*`
//! environment variables (and `DATABASE_URL`). Unknown keys are rejected; cross-field checks
//! run once at boot so a bad deployment fails before it serves anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Default config file looked up in the working directory when none is named.
pub const DEFAULT_CONFIG_FILE: &str = "switchboard.toml";

/// The whole configuration of one Switchboard process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub cluster: ClusterSettings,
    pub websocket: WebSocketSettings,
    pub auth: AuthSettings,
    pub retention: RetentionSettings,
    pub ai: AiSettings,
    pub log: LogSettings,
}

/// Whether this replica shares its database with others (see `docs/operations.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// On for PostgreSQL, off for SQLite.
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    pub mode: ClusterMode,
}

/// The local AI engine and the bot it drives.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiSettings {
    /// Analyse visitor messages, answer them in bot mode and apply the escalation rules. Off,
    /// Switchboard is a plain relay between visitors and agents (and starts in a second).
    pub enabled: bool,
    /// Folder with `minilm/` and `sentiment/`.
    pub models_dir: PathBuf,
    /// The knowledge-base folder imported into the database on the first start; the database
    /// is the source of truth afterwards (`switchboard kb import`).
    pub knowledge_base: PathBuf,
    /// Where the intent head trained on the knowledge base is kept between starts (passage
    /// embeddings are in the database).
    pub cache_dir: PathBuf,
    /// The knowledge base's search index (tantivy), brought up to date at each start; an
    /// empty path keeps it in RAM. A rebuild empties this folder, so it must be the index's own.
    pub index_dir: PathBuf,
    /// Analyses under way at once; more are refused as overload.
    pub max_in_flight: usize,
    /// Threads of the embedder; 0 means one per CPU core.
    pub threads: usize,
    /// Intent confidence below which a message counts as out of scope.
    pub intent_threshold: f32,
    /// Intent confidence from which the bot answers from the intent.
    pub answer_confidence: f32,
    /// Top two intents closer than this (both at least `clarify_floor`): the bot asks which.
    pub clarify_margin: f32,
    pub clarify_floor: f32,
    /// Passage similarity (cosine) from which the best passage answers by itself.
    pub passage_similarity: f32,
    /// Weight of the dense score in hybrid retrieval (the rest is normalised BM25).
    pub dense_weight: f32,
    /// An encoder fine-tuned on the intents (`switchboard train intents --fine-tune DIR`)
    /// for the intent head; unset, the shipped encoder serves intents too.
    pub intent_encoder: Option<PathBuf>,
    /// A query encoder tuned on the knowledge base (`switchboard train retrieval --out DIR`)
    /// that embeds questions for retrieval; unset, the shipped encoder does.
    pub query_encoder: Option<PathBuf>,
}

impl Default for AiSettings {
    fn default() -> Self {
        let responder = crate::ai::ResponderConfig::default();
        Self {
            enabled: true,
            models_dir: "models".into(),
            knowledge_base: "knowledge-base".into(),
            cache_dir: "data/cache".into(),
            index_dir: "data/index".into(),
            max_in_flight: 64,
            threads: 0,
            intent_threshold: 0.5,
            answer_confidence: responder.answer_confidence,
            clarify_margin: responder.clarify_margin,
            clarify_floor: responder.clarify_floor,
            passage_similarity: responder.passage_similarity,
            dense_weight: match crate::ai::retrieval::Fusion::default() {
                crate::ai::retrieval::Fusion::Convex { dense_weight } => dense_weight,
                _ => 1.0,
            },
            intent_encoder: None,
            query_encoder: None,
        }
    }
}

impl AiSettings {
    /// The engine's configuration.
    pub fn engine(&self) -> crate::ai::EngineConfig {
        crate::ai::EngineConfig {
            models_dir: self.models_dir.clone(),
            cache_dir: self.cache_dir.clone(),
            index_dir: (!self.index_dir.as_os_str().is_empty()).then(|| self.index_dir.clone()),
            max_in_flight: self.max_in_flight,
            intent_threshold: self.intent_threshold,
            responder: crate::ai::ResponderConfig {
                answer_confidence: self.answer_confidence,
                clarify_margin: self.clarify_margin,
                clarify_floor: self.clarify_floor,
                passage_similarity: self.passage_similarity,
                ..Default::default()
            },
            fusion: crate::ai::retrieval::Fusion::Convex {
                dense_weight: self.dense_weight,
            },
            worker: crate::ai::WorkerConfig::default(),
            threads: self.threads,
            intent_encoder: self.intent_encoder.clone(),
            query_encoder: self.query_encoder.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Conversations untouched for this many days are deleted, with their messages; 0 keeps
    /// everything.
    pub days: u32,
    /// How often the purge runs.
    pub purge_interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            days: 0,
            purge_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (used by the tests).
    pub port: u16,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Drain deadline: seconds from SIGTERM until the process exits.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            shutdown_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` (default, embedded) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/switchboard.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketSettings {
    /// Longest message text accepted from a client, in bytes; longer gets a `too_large` error frame.
    pub max_text_bytes: usize,
    /// Largest WebSocket frame read at all; a bigger one closes the connection (1009).
    pub max_frame_bytes: usize,
    /// Frames buffered per connection before it counts as a slow consumer and is closed.
    pub outbound_queue: usize,
    /// How often the server pings each client.
    pub heartbeat_interval_ms: u64,
    /// A client silent for this long is dropped.
    pub client_timeout_ms: u64,
    /// Time allowed between the upgrade and the `hello` frame.
    pub hello_timeout_ms: u64,
    /// Time allowed for one frame to be handed to a client's socket before it counts as stuck.
    pub write_timeout_ms: u64,
    /// Sustained chat messages per second allowed from one connection.
    pub messages_per_second: u32,
    /// Burst of chat messages allowed above the sustained rate.
    pub message_burst: u32,
}

/// Named defaults for the heartbeat, kept in one place.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            max_text_bytes: 4096,
            max_frame_bytes: 64 * 1024,
            outbound_queue: 256,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u64,
            client_timeout_ms: CLIENT_TIMEOUT.as_millis() as u64,
            hello_timeout_ms: HELLO_TIMEOUT.as_millis() as u64,
            write_timeout_ms: WRITE_TIMEOUT.as_millis() as u64,
            messages_per_second: 10,
            message_burst: 20,
        }
    }
}

impl WebSocketSettings {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }
    pub fn hello_timeout(&self) -> Duration {
        Duration::from_millis(self.hello_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Key that signs visitor tokens (at least 32 bytes). When unset, a random key is generated
    /// once and kept in the database, so every replica on the same database shares it.
    pub visitor_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `switchboard=debug,actix_web=info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info,tantivy=warn".into(),
        }
    }
}

/// What went wrong while loading the configuration; the message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` (or `switchboard.toml` if it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let path: Option<PathBuf> = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(
                Env::prefixed("SWITCHBOARD_")
                    .ignore(&["config"])
                    .split("__"),
            )
            .merge(
                Env::raw()
                    .only(&["database_url"])
                    .map(|_| "database.url".into()),
            );
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Cross-field checks, each with the fix in its message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ws = &self.websocket;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return invalid(
                "database.url must start with sqlite: or postgres:// (e.g. sqlite://data/switchboard.db?mode=rwc)",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        if ws.max_text_bytes == 0 || ws.max_text_bytes >= ws.max_frame_bytes {
            return invalid(
                "websocket.max_text_bytes must be above 0 and below websocket.max_frame_bytes (leave room for the JSON around the text)",
            );
        }
        if ws.outbound_queue == 0 {
            return invalid("websocket.outbound_queue must be at least 1");
        }
        if ws.heartbeat_interval_ms == 0 || ws.heartbeat_interval_ms >= ws.client_timeout_ms {
            return invalid(
                "websocket.heartbeat_interval_ms must be above 0 and below websocket.client_timeout_ms, or live clients are dropped between pings",
            );
        }
        if ws.messages_per_second == 0 || ws.message_burst == 0 {
            return invalid(
                "websocket.messages_per_second and websocket.message_burst must be at least 1",
            );
        }
        if self.retention.days > 0 && self.retention.purge_interval_secs == 0 {
            return invalid(
                "retention.purge_interval_secs must be at least 1 when retention.days is set",
            );
        }
        if ws.hello_timeout_ms == 0 || ws.write_timeout_ms == 0 {
            return invalid(
                "websocket.hello_timeout_ms and websocket.write_timeout_ms must be above 0",
            );
        }
        if self.cluster.mode == ClusterMode::On && !self.is_postgres() {
            return invalid(
                "cluster.mode = \"on\" needs PostgreSQL: set database.url (or DATABASE_URL) to postgres://…, or use mode \"auto\" for a single SQLite replica",
            );
        }
        let ai = &self.ai;
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        if ![
            ai.intent_threshold,
            ai.answer_confidence,
            ai.clarify_margin,
            ai.clarify_floor,
            ai.passage_similarity,
            ai.dense_weight,
        ]
        .into_iter()
        .all(unit)
        {
            return invalid(
                "ai.intent_threshold, answer_confidence, clarify_margin, clarify_floor, passage_similarity and dense_weight are between 0 and 1",
            );
        }
        let index = &ai.index_dir;
        if !index.as_os_str().is_empty()
            && [&ai.models_dir, &ai.knowledge_base, &ai.cache_dir]
                .into_iter()
                .any(|other| other.starts_with(index) || index.starts_with(other))
        {
            return invalid(
                "ai.index_dir must be a folder of its own, not ai.models_dir, ai.knowledge_base or ai.cache_dir nor inside or around them: a rebuild of the index empties it (the default is data/index)",
            );
        }
        if ai.max_in_flight == 0 {
            return invalid("ai.max_in_flight must be at least 1");
        }
        if let Some(secret) = &self.auth.visitor_secret
            && secret.len() < 32
        {
            return invalid(
                "auth.visitor_secret must be at least 32 bytes; generate one with `openssl rand -hex 32`, or unset it to let the server keep one in the database",
            );
        }
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.database.url.starts_with("postgres")
    }

    /// Whether replicas announce their writes to each other (LISTEN/NOTIFY).
    pub fn is_clustered(&self) -> bool {
        match self.cluster.mode {
            ClusterMode::Auto => self.is_postgres(),
            ClusterMode::On => true,
            ClusterMode::Off => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default()
            .validate()
            .expect("defaults must pass their own checks");
    }

    #[test]
    fn the_example_file_lists_valid_options() {
        let example = include_str!("../config/example.toml");
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(example))
            .extract()
            .expect("config/example.toml parses with no unknown keys");
        settings.validate().expect("the example is valid");
        let defaults =
            toml_keys(&toml::Value::try_from(Settings::default()).expect("settings serialise"));
        for key in defaults {
            let documented = example.contains(&format!("\n{key} ="))
                || example.contains(&format!("\n# {key} ="));
            assert!(documented, "config/example.toml does not document `{key}`");
        }
    }

    fn toml_keys(value: &toml::Value) -> Vec<String> {
        let mut keys = Vec::new();
        if let toml::Value::Table(table) = value {
            for (k, v) in table {
                match v {
                    toml::Value::Table(_) => keys.extend(toml_keys(v)),
                    _ => keys.push(k.clone()),
                }
            }
        }
        keys
    }

    /// The `switchboard.toml` a Kubernetes config map embeds.
    fn embedded_toml(manifest: &str) -> String {
        let (_, block) = manifest
            .split_once("switchboard.toml: |\n")
            .expect("the config map embeds switchboard.toml");
        block
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect()
    }

    #[test]
    fn the_kubernetes_config_map_holds_a_valid_config() {
        let toml = embedded_toml(include_str!("../k8s/configmap.yaml"));
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(&toml))
            .extract()
            .expect("the embedded switchboard.toml has no unknown keys");
        settings.validate().expect("the embedded config is valid");
        assert_eq!(settings.server.host, "0.0.0.0");
        assert!(
            settings
                .database
                .url
                .starts_with("sqlite:///var/lib/switchboard/")
        );
    }

    #[test]
    fn the_kubernetes_postgres_config_map_needs_the_database_url_from_its_secret() {
        let toml = embedded_toml(include_str!("../k8s/configmap-postgres.yaml"));
        let load = |env: &str| -> Settings {
            Figment::from(Serialized::defaults(Settings::default()))
                .merge(Toml::string(&toml))
                .merge(Toml::string(env))
                .extract()
                .expect("the embedded switchboard.toml has no unknown keys")
        };
        let settings = load("[database]\nurl = \"postgres://switchboard@db/switchboard\"");
        settings.validate().expect("the embedded config is valid");
        assert!(settings.is_clustered());
        assert_eq!(settings.server.host, "0.0.0.0");
        let msg = load("")
            .validate()
            .expect_err("without DATABASE_URL from the secret it must not start")
            .to_string();
        assert!(msg.contains("cluster.mode"), "{msg}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string("[server]\nprot = 9000\n"))
            .extract::<Settings>()
            .expect_err("a misspelt key must not be ignored");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn cross_field_checks_explain_the_fix() {
        let mut s = Settings::default();
        s.websocket.heartbeat_interval_ms = s.websocket.client_timeout_ms;
        let msg = s
            .validate()
            .expect_err("heartbeat must be shorter")
            .to_string();
        assert!(msg.contains("client_timeout_ms"), "{msg}");

        let mut s = Settings::default();
        s.auth.visitor_secret = Some("short".into());
        assert!(s.validate().is_err());

        let mut s = Settings::default();
        s.database.url = "mysql://x".into();
        assert!(s.validate().is_err());

        let mut s = Settings::default();
        s.ai.index_dir = "data".into();
        let msg = s
            .validate()
            .expect_err("an index folder around the cache would be emptied with it")
            .to_string();
        assert!(msg.contains("ai.index_dir"), "{msg}");
        s.ai.index_dir = "".into();
        s.validate()
            .expect("an empty index_dir keeps the index in RAM");
    }
}
