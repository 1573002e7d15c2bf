#!/usr/bin/env bash
# Reproduces the figures in docs/benchmarks.md: builds release binaries, starts a server on a
# fresh SQLite database (with BENCH_POSTGRES=1: a fresh PostgreSQL database `switchboard_bench`
# on 127.0.0.1:5432), and runs the load tool against it as a separate process. Loopback only;
# every run is bounded in time. BENCH_DIR=/dev/shm puts the SQLite database on tmpfs, which
# separates the relay's own latency from the disk's sync times.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchboard-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

start_server() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if curl -sf http://127.0.0.1:8080/health >/dev/null; then
        echo "something else already listens on 127.0.0.1:8080; stop it first" >&2
        exit 1
    fi
    rm -rf "$work/data"
    local url="sqlite://data/switchboard.db?mode=rwc"
    if [ "${BENCH_POSTGRES:-0}" = 1 ]; then
        psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS switchboard_bench WITH (FORCE)" -c "CREATE DATABASE switchboard_bench"
        url="postgres://postgres@127.0.0.1:5432/switchboard_bench"
    fi
    # The relay alone: the AI engine (measured by the bot benchmark) would answer every message.
    (cd "$work" && SWITCHBOARD_LOG__LEVEL=warn SWITCHBOARD_AI__ENABLED=false DATABASE_URL="$url" \
        SWITCHBOARD_WEBSOCKET__MESSAGES_PER_SECOND=100000 SWITCHBOARD_WEBSOCKET__MESSAGE_BURST=100000 \
        exec "$bin/switchboard") &
    server=$!
    for _ in $(seq 1 50); do
        if curl -sf http://127.0.0.1:8080/ready >/dev/null && kill -0 "$server" 2>/dev/null; then
            return
        fi
        sleep 0.2
    done
    echo "server did not become ready" >&2; exit 1
}

echo "== idle connections"
start_server
"$bin/switchboard-load" idle --connections 10000 --hold-secs 6

for spec in "200 5 1000" "200 5 2000" "200 5 5000" "100 11 5000" "100 21 3000"; do
    read -r conversations tabs rate <<<"$spec"
    echo "== chat: $conversations conversations x $tabs tabs, $rate messages/s"
    start_server
    "$bin/switchboard-load" chat --conversations "$conversations" --tabs "$tabs" --rate "$rate" --duration-secs 10
done
