//! Prometheus metrics in an explicit registry. Names carry the `switchboard_` prefix and a unit
//! suffix; no label ever takes an id or a raw path, so series stay bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
    pub build_info: IntGaugeVec,
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
