//! Prometheus metrics in an explicit registry. Names carry the `switchboard_` prefix and a unit
//! suffix; no label ever takes an id or a raw path, so series stay bounded.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for human waiting times, in seconds: from seconds to an hour.
const WAIT_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// Every metric the server records, registered once at start.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub messages: IntCounterVec,
    pub ws_closes: IntCounterVec,
    pub slow_consumer_evictions: IntCounter,
    pub cluster_events: IntCounter,
    pub cluster_resumes: IntCounter,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub db_pool_connections: IntGaugeVec,
    /// The SQLite write-ahead log's series: exposed only once [`Metrics::track_sqlite`] is
    /// called, so a server on PostgreSQL does not report a log it does not have.
    pub sqlite_wal_pages: IntGauge,
    pub sqlite_checkpoint_failures: IntCounter,
    pub build_info: IntGaugeVec,
    pub ai_stage_duration: HistogramVec,
    pub ai_overloads: IntCounter,
    pub embed_batch_size: Histogram,
    pub conversations: IntGaugeVec,
    pub bot_replies: IntCounterVec,
    pub intents: IntCounterVec,
    pub feedback: IntCounterVec,
    pub escalations: IntCounterVec,
    pub queue_depth: IntGauge,
    pub agents_online: IntGauge,
    pub queue_wait: Histogram,
    pub escalation_to_agent: Histogram,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("each metric is registered once, under a unique name");
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Self {
            connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchboard_ws_connections",
                        "Open WebSocket connections by role.",
                    ),
                    &["role"],
                )
                .expect("valid metric"),
            ),
            messages: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_messages_total",
                        "Messages stored, by author role.",
                    ),
                    &["author"],
                )
                .expect("valid metric"),
            ),
            ws_closes: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_ws_closes_total",
                        "WebSocket connections closed by the server, by reason.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            slow_consumer_evictions: register(
                r,
                IntCounter::new(
                    "switchboard_ws_slow_consumer_evictions_total",
                    "Sockets evicted because their outbound queue was full.",
                )
                .expect("valid metric"),
            ),
            cluster_events: register(
                r,
                IntCounter::new(
                    "switchboard_cluster_events_received_total",
                    "Events received from other replicas (cluster mode).",
                )
                .expect("valid metric"),
            ),
            cluster_resumes: register(
                r,
                IntCounter::new(
                    "switchboard_cluster_listener_resumes_total",
                    "Times the cluster listener (re)connected and recovered what it may have missed.",
                )
                .expect("valid metric"),
            ),
            http_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_http_requests_total",
                        "HTTP requests by route pattern, method and status.",
                    ),
                    &["route", "method", "status"],
                )
                .expect("valid metric"),
            ),
            http_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "switchboard_http_request_duration_seconds",
                        "HTTP request latency by route pattern and method.",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                    &["route", "method"],
                )
                .expect("valid metric"),
            ),
            db_pool_connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchboard_db_pool_connections",
                        "Database pool connections by state.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            sqlite_wal_pages: IntGauge::new(
                "switchboard_sqlite_wal_pages",
                "SQLite: the write-ahead log's length in 4 KiB pages at the last checkpoint.",
            )
            .expect("valid metric"),
            sqlite_checkpoint_failures: IntCounter::new(
                "switchboard_sqlite_checkpoint_failures_total",
                "SQLite: write-ahead log checkpoints that failed.",
            )
            .expect("valid metric"),
            build_info: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchboard_build_info",
                        "Always 1; labels say which build runs.",
                    ),
                    &["version"],
                )
                .expect("valid metric"),
            ),
            ai_stage_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "switchboard_ai_stage_duration_seconds",
                        "Time the AI engine spends per visitor message, by stage \
                         (embed, intent, sentiment, entities, retrieval, respond; analyze is \
                         the whole analysis, embed to retrieval, queueing included).",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0,
                    ]),
                    &["stage"],
                )
                .expect("valid metric"),
            ),
            embed_batch_size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "switchboard_embed_batch_size",
                        "Texts per forward pass of the embedder, seen by each visitor message.",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
                )
                .expect("valid metric"),
            ),
            conversations: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "switchboard_conversations",
                        "Conversations by state, read from the database at each scrape.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            ai_overloads: register(
                r,
                IntCounter::new(
                    "switchboard_ai_overloaded_total",
                    "Visitor messages the AI engine refused because it was at its concurrency cap.",
                )
                .expect("valid metric"),
            ),
            bot_replies: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_bot_replies_total",
                        "Bot replies by kind (answer, clarify, fallback, busy).",
                    ),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            intents: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_intents_total",
                        "Visitor messages by recognised intent (a knowledge-base intent, or oos).",
                    ),
                    &["intent"],
                )
                .expect("valid metric"),
            ),
            feedback: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_feedback_total",
                        "Ratings received from visitors, by kind (answer, conversation) and rating \
                         (up, down; 1 to 5).",
                    ),
                    &["kind", "rating"],
                )
                .expect("valid metric"),
            ),
            escalations: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "switchboard_escalations_total",
                        "Escalation rule firings, by rule name.",
                    ),
                    &["rule"],
                )
                .expect("valid metric"),
            ),
            agents_online: register(
                r,
                IntGauge::new(
                    "switchboard_agents_online",
                    "Agents whose status is online, read from the database at each scrape.",
                )
                .expect("valid metric"),
            ),
            queue_depth: register(
                r,
                IntGauge::new(
                    "switchboard_queue_depth",
                    "Conversations waiting in the queue, read from the database at each scrape.",
                )
                .expect("valid metric"),
            ),
            queue_wait: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "switchboard_queue_wait_seconds",
                        "Time a conversation waited in the queue before an agent got it.",
                    )
                    .buckets(WAIT_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            escalation_to_agent: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "switchboard_escalation_to_agent_seconds",
                        "Time from a conversation's escalation to the first agent message after it.",
                    )
                    .buckets(WAIT_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            registry,
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = metrics.registry.register(Box::new(process)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        metrics
    }

    /// Exposes the SQLite write-ahead log's series, for a server whose store is SQLite. A
    /// second call changes nothing.
    pub fn track_sqlite(&self) {
        let series: [Box<dyn prometheus::core::Collector>; 2] = [
            Box::new(self.sqlite_wal_pages.clone()),
            Box::new(self.sqlite_checkpoint_failures.clone()),
        ];
        for collector in series {
            match self.registry.register(collector) {
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(e) => tracing::warn!(error = %e, "SQLite metrics unavailable"),
            }
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Sockets open now, all roles together.
    pub fn open_sockets(&self) -> i64 {
        ["widget", "agent"]
            .iter()
            .map(|role| self.connections.with_label_values(&[*role]).get())
            .sum()
    }

    /// Counts one firing of an escalation rule. Rule names come from the rule set, so the
    /// label stays bounded.
    pub fn escalated(&self, rule: &str) {
        self.escalations.with_label_values(&[rule]).inc();
    }

    /// Counts one rating: `rating` is `up`/`down` for answers, `1`..`5` for conversations.
    pub fn rated(&self, kind: &str, rating: &str) {
        self.feedback.with_label_values(&[kind, rating]).inc();
    }

    /// Counts a socket as open until the returned guard drops.
    pub fn connection(&self, role: &'static str) -> ConnectionGuard {
        let gauge = self.connections.with_label_values(&[role]);
        gauge.inc();
        ConnectionGuard(gauge)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements the open-connection gauge when a socket task ends, however it ends.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
