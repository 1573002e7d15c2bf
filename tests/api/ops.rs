//! Operator surface and the command line.

use std::process::Command;

use serde_json::Value;
use switchboard::domain::AgentRole;

use crate::helpers::{Backend, TestDatabase, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    health_ready_metrics_and_openapi,
    cli_creates_and_lists_agents
);

async fn health_ready_metrics_and_openapi(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/health", None).await.status(), 200);
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status(), 200);

    let (_widget, _) = app.visitor().await;
    let (_, token) = app.agent("Metrics", AgentRole::Agent).await;
    let _console = app.console(&token).await;
    assert_eq!(
        app.metric("switchboard_ws_connections{role=\"widget\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("switchboard_ws_connections{role=\"agent\"}")
            .await,
        1.0
    );
    for endpoint in ["/ws/widget", "/ws/agent"] {
        let series = format!(
            "switchboard_http_requests_total{{method=\"GET\",route=\"{endpoint}\",status=\"101\"}}"
        );
        assert_eq!(
            app.metric(&series).await,
            1.0,
            "the upgrade to {endpoint} is counted"
        );
    }
    let body = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        body.contains(
            "switchboard_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("switchboard_build_info"),
        "build info present"
    );
    let sqlite = body.contains("switchboard_sqlite_checkpoint_failures_total 0")
        && body.contains("switchboard_sqlite_wal_pages ");
    assert_eq!(
        sqlite,
        backend == Backend::Sqlite,
        "the write-ahead log's metrics, on SQLite only: {body}"
    );
    assert!(
        backend == Backend::Sqlite || !body.contains("switchboard_sqlite_"),
        "no SQLite series on PostgreSQL: {body}"
    );
    assert!(
        !body.contains(app.port.to_string().as_str())
            || !body.contains("route=\"/api/v1/conversations/"),
        "no raw paths in labels"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian package prometheus; .ci/run installs it)");
    std::io::Write::write_all(
        &mut promtool.stdin.take().expect("stdin is piped"),
        body.as_bytes(),
    )
    .expect("metrics written to promtool");
    let checked = promtool.wait_with_output().expect("promtool runs");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .expect("openapi json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for path in [
        "/conversations",
        "/conversations/{id}/messages",
        "/conversations/{id}/claim",
        "/agents/me/status",
        "/feedback",
        "/analytics/summary",
        "/articles",
        "/articles/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for schema in [
        "Feedback",
        "Summary",
        "Durations",
        "Article",
        "ArticleInput",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} documented"
        );
    }
}

async fn cli_creates_and_lists_agents(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let run = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("SWITCHBOARD_LOG__LEVEL", "warn")
            .output()
            .expect("the binary runs")
    };
    let migrated = run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    let created = run(&[
        "agent",
        "create",
        "--name",
        "Ops Person",
        "--email",
        "ops@example.test",
        "--role",
        "admin",
        "--skills",
        "billing,safety",
        "--max-concurrent",
        "3",
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let out = String::from_utf8_lossy(&created.stdout);
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("sb_"))
        .expect("a token is printed");
    let store = switchboard::store::Store::connect(&db.url, 1)
        .await
        .expect("connect");
    let agent = store
        .agent_by_token(&switchboard::auth::hash_api_token(token))
        .await
        .expect("lookup")
        .expect("token works");
    assert_eq!((agent.role, agent.max_concurrent), (AgentRole::Admin, 3));

    let listed = run(&["agent", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("ops@example.test"));

    let refused = Command::new(bin)
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_SERVER__PROT", "1")
        .output()
        .expect("runs");
    assert!(
        !refused.status.success(),
        "unknown configuration keys are rejected"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("prot"));
}
