#!/usr/bin/env bash
# Cross-replica delivery (docs/benchmarks.md, "Cluster mode"): builds release binaries, starts
# two replicas on one fresh PostgreSQL database (`switchboard_bench_cluster` on 127.0.0.1:5432),
# and runs the load tool with senders on replica A and receivers on replica B, so every
# delivered frame went through LISTEN/NOTIFY. Loopback only; every run is bounded in time.
# RATES overrides the message rates tried (default "1000 2000 5000").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
admin=postgres://postgres@127.0.0.1:5432/postgres
url=postgres://postgres@127.0.0.1:5432/switchboard_bench_cluster
work=$(mktemp -d)
replicas=()
stop_replicas() {
    for pid in "${replicas[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    replicas=()
}
trap 'stop_replicas; rm -rf "$work"' EXIT

start_replica() {
    local port=$1
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
        echo "something else already listens on 127.0.0.1:$port; stop it first" >&2
        exit 1
    fi
    # The relay alone, as in bench-realtime.sh: with the AI engine on, the bot would answer every message.
    (cd "$work" && SWITCHBOARD_LOG__LEVEL=warn SWITCHBOARD_AI__ENABLED=false DATABASE_URL="$url" SWITCHBOARD_CLUSTER__MODE=on \
        SWITCHBOARD_SERVER__PORT="$port" \
        SWITCHBOARD_WEBSOCKET__MESSAGES_PER_SECOND=100000 SWITCHBOARD_WEBSOCKET__MESSAGE_BURST=100000 \
        exec "$bin/switchboard") &
    replicas+=($!)
    for _ in $(seq 1 100); do
        if curl -sf "http://127.0.0.1:$port/ready" >/dev/null; then
            return
        fi
        sleep 0.2
    done
    echo "replica on port $port did not become ready" >&2
    exit 1
}

start_cluster() {
    stop_replicas
    psql "$admin" -qc "DROP DATABASE IF EXISTS switchboard_bench_cluster WITH (FORCE)" \
        -c "CREATE DATABASE switchboard_bench_cluster"
    start_replica 8081
    start_replica 8082
}

for rate in ${RATES:-1000 2000 5000}; do
    echo "== across replicas: 200 conversations x 5 tabs, $rate messages/s (send on A, receive on B)"
    start_cluster
    "$bin/switchboard-load" --server 127.0.0.1:8081 --peer 127.0.0.1:8082 \
        chat --conversations 200 --tabs 5 --rate "$rate" --duration-secs 10
    echo "== same replica, for comparison: $rate messages/s (send and receive on A, B idle)"
    start_cluster
    "$bin/switchboard-load" --server 127.0.0.1:8081 \
        chat --conversations 200 --tabs 5 --rate "$rate" --duration-secs 10
done
