//! Load generator for the widget WebSocket. Runs as its own process (so its sockets do not
//! count against the server's open-file limit) and only ever targets loopback addresses.
//!
//! `idle`: opens N widget connections and reports server RSS per connection.
//! `chat`: C conversations with T tabs each; one tab per conversation sends at a fixed total
//! rate, the others receive; reports delivered messages/s and delivery latency percentiles.
//! With `--peer`, the receiving tabs connect to a second replica of the same database.
//! `bot`: C conversations each ask the bot Q questions, one after another (each waits for its
//! answer); reports the time from a question to the bot's reply, p50/p99. The questions are
//! ones the demo knowledge base answers, so no conversation escalates.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Parser)]
#[command(
    name = "switchboard-load",
    about = "Load generator for Switchboard's widget WebSocket"
)]
struct Args {
    /// Server address; must be on 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Another replica on the same database (cluster mode; loopback too): in `chat`, senders
    /// connect to `--server` and receivers here, so every delivery crosses replicas.
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// Spread client sockets over this many source addresses 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 200)]
    ramp_batch: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Hold N idle widget connections and measure the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold the connections before reporting.
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
    },
    /// Chat traffic: one sender per conversation, the other tabs receive.
    Chat {
        #[arg(long, default_value_t = 100)]
        conversations: usize,
        /// Connections per conversation (1 sender + tabs-1 receivers).
        #[arg(long, default_value_t = 5)]
        tabs: usize,
        /// Total messages per second sent, over all conversations.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Message text size in bytes.
        #[arg(long, default_value_t = 100)]
        text_bytes: usize,
    },
    /// Questions to the bot: visitor message to bot reply, end to end.
    Bot {
        /// Conversations asking at the same time.
        #[arg(long, default_value_t = 1)]
        conversations: usize,
        /// Questions each conversation asks, one after the other.
        #[arg(long, default_value_t = 200)]
        questions: usize,
        /// Give up waiting for one reply after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
}

/// Bytes a client socket reads at a time (frames larger than this still arrive whole).
const CLIENT_READ_BUFFER: usize = 4096;

/// Questions the demo knowledge base answers (none asks for a person or is angry).
const QUESTIONS: [&str; 12] = [
    "how do I get a refund for a trip?",
    "what payment methods do you accept?",
    "how much is the cancellation fee?",
    "how do I contact my driver about a lost item?",
    "how do I add a promo code?",
    "can I schedule a ride for tomorrow morning?",
    "how do tips work?",
    "where can I download a receipt for my ride?",
    "what documents do I need to drive with you?",
    "when do drivers get paid?",
    "can I bring my dog on a ride?",
    "how do I change the email on my account?",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for target in std::iter::once(args.server).chain(args.peer) {
        let IpAddr::V4(ip) = target.ip() else {
            bail!("only IPv4 loopback targets are supported")
        };
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: only 127.0.0.0/8 may be targeted");
        }
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising the open file limit")?;
    eprintln!("open file limit: {limit}");
    let client = Client {
        server: args.server,
        source_ips: args.source_ips.max(1),
        next: Arc::new(AtomicU64::new(0)),
    };
    let receivers = Client {
        server: args.peer.unwrap_or(args.server),
        ..client.clone()
    };
    match args.mode {
        Mode::Idle {
            connections,
            hold_secs,
        } => idle(&client, connections, hold_secs, args.ramp_batch).await,
        Mode::Chat {
            conversations,
            tabs,
            rate,
            duration_secs,
            text_bytes,
        } => {
            chat(
                &client,
                &receivers,
                conversations,
                tabs.max(2),
                rate,
                duration_secs,
                text_bytes,
                args.ramp_batch,
            )
            .await
        }
        Mode::Bot {
            conversations,
            questions,
            timeout_secs,
        } => bot(&client, conversations.max(1), questions, timeout_secs).await,
    }
}

#[derive(Clone)]
struct Client {
    server: SocketAddr,
    source_ips: u8,
    next: Arc<AtomicU64>,
}

impl Client {
    async fn connect(&self) -> anyhow::Result<Socket> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let source = Ipv4Addr::new(127, 0, 0, 1 + (n % u64::from(self.source_ips)) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        let stream = socket.connect(self.server).await?;
        stream.set_nodelay(true)?;
        let url = format!("ws://{}/ws/widget", self.server);
        // tungstenite zero-fills its whole read buffer (128 KiB by default) before every read:
        // a load generator on the server's cores would spend a core on that alone.
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(stream),
            Some(config),
        )
        .await?;
        Ok(ws)
    }

    /// Connects and says hello; returns the socket and the welcome frame.
    async fn widget(&self, token: Option<&str>) -> anyhow::Result<(Socket, Value)> {
        let mut ws = self.connect().await?;
        let hello = json!({"type": "hello", "protocol": 1, "token": token, "last_seq": i64::MAX});
        ws.send(Message::text(hello.to_string())).await?;
        loop {
            match ws.next().await.context("closed before welcome")?? {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "welcome" {
                        return Ok((ws, v));
                    }
                    bail!("expected welcome, got {v}");
                }
                _ => continue,
            }
        }
    }

    async fn server_rss(&self) -> anyhow::Result<f64> {
        let mut stream = TcpStream::connect(self.server).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        body.lines()
            .find_map(|l| {
                l.strip_prefix("process_resident_memory_bytes ")
                    .and_then(|v| v.trim().parse().ok())
            })
            .context("server exposes no process_resident_memory_bytes")
    }
}

async fn idle(
    client: &Client,
    connections: usize,
    hold_secs: u64,
    batch: usize,
) -> anyhow::Result<()> {
    let before = client.server_rss().await?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(connections);
    while sockets.len() < connections {
        let n = batch.min(connections - sockets.len());
        let opened = futures_util::future::join_all((0..n).map(|_| client.widget(None))).await;
        for o in opened {
            sockets.push(o?.0);
        }
    }
    let ramp = started.elapsed();
    let keep = tokio::spawn(async move {
        let mut sockets = sockets;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(hold_secs);
        while tokio::time::Instant::now() < deadline {
            for s in sockets.iter_mut() {
                let _ = tokio::time::timeout(Duration::from_micros(1), s.next()).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sockets.len()
    });
    tokio::time::sleep(Duration::from_secs(hold_secs / 2 + 1)).await;
    let after = client.server_rss().await?;
    let held = keep.await?;
    println!("idle connections: {held}");
    println!(
        "ramp-up: {:.1} s ({:.0} connections/s)",
        ramp.as_secs_f64(),
        held as f64 / ramp.as_secs_f64()
    );
    println!(
        "server RSS: before {:.1} MiB, with connections {:.1} MiB",
        before / 1048576.0,
        after / 1048576.0
    );
    println!(
        "server RSS per idle connection: {:.1} KiB",
        (after - before) / held as f64 / 1024.0
    );
    Ok(())
}

struct Stats {
    latency: Histogram<u64>,
    delivered: u64,
}

#[allow(clippy::too_many_arguments)]
async fn chat(
    client: &Client,
    receiving: &Client,
    conversations: usize,
    tabs: usize,
    rate: u64,
    duration_secs: u64,
    text_bytes: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let mut groups = Vec::with_capacity(conversations);
    for chunk in (0..conversations).collect::<Vec<_>>().chunks(batch.max(1)) {
        let opened = futures_util::future::join_all(chunk.iter().map(|_| async {
            let (sender, welcome) = client.widget(None).await?;
            let token = welcome["token"]
                .as_str()
                .context("welcome has a token")?
                .to_string();
            let mut receivers = Vec::with_capacity(tabs - 1);
            for _ in 1..tabs {
                receivers.push(receiving.widget(Some(&token)).await?.0);
            }
            anyhow::Ok((sender, receivers))
        }))
        .await;
        for g in opened {
            groups.push(g?);
        }
    }
    eprintln!("{} connections open", conversations * tabs);

    let epoch = Instant::now();
    let stats = Arc::new(Mutex::new(Stats {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        delivered: 0,
    }));
    let sent = Arc::new(AtomicU64::new(0));
    let end = epoch + Duration::from_secs(duration_secs);
    let per_sender = rate as f64 / conversations as f64;
    let interval = Duration::from_secs_f64(1.0 / per_sender.max(0.001));
    let padding = "x".repeat(text_bytes.saturating_sub(24));
    let mut tasks = Vec::new();
    for (i, (sender, receivers)) in groups.into_iter().enumerate() {
        for mut rx in receivers {
            let stats = stats.clone();
            tasks.push(tokio::spawn(async move {
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
                let mut count = 0u64;
                let drain_until = end + Duration::from_secs(2);
                while let Ok(Some(Ok(frame))) =
                    tokio::time::timeout_at(drain_until.into(), rx.next()).await
                {
                    if let Message::Text(t) = frame
                        && let Some(us) = t
                            .split("\"text\":\"t")
                            .nth(1)
                            .and_then(|r| r.split(' ').next())
                            .and_then(|v| v.parse::<u64>().ok())
                    {
                        let now = epoch.elapsed().as_micros() as u64;
                        let _ = local.record(now.saturating_sub(us).max(1));
                        count += 1;
                    }
                }
                let mut s = stats.lock().await;
                let _ = s.latency.add(&local);
                s.delivered += count;
            }));
        }
        let sent = sent.clone();
        let padding = padding.clone();
        tasks.push(tokio::spawn(async move {
            let offset = interval.mul_f64((i as f64 * 0.618_034) % 1.0);
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0u64;
            let (mut write, mut read) = sender.split();
            let drain = tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
            while Instant::now() < end {
                tick.tick().await;
                let us = epoch.elapsed().as_micros();
                let frame = json!({"type": "message", "client_id": format!("{i}-{n}"), "text": format!("t{us} {padding}")});
                if write.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                n += 1;
            }
            sent.fetch_add(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(2)).await;
            drain.abort();
        }));
    }
    for t in tasks {
        t.await?;
    }
    let s = stats.lock().await;
    let sent = sent.load(Ordering::Relaxed);
    let secs = duration_secs as f64;
    println!(
        "connections: {} ({} conversations x {} tabs)",
        conversations * tabs,
        conversations,
        tabs
    );
    if receiving.server != client.server {
        println!(
            "senders on {}, receivers on {}: every delivery crosses replicas",
            client.server, receiving.server
        );
    }
    println!(
        "sent: {sent} messages ({:.0}/s, target {rate}/s)",
        sent as f64 / secs
    );
    println!(
        "delivered: {} frames ({:.0}/s), expected {}",
        s.delivered,
        s.delivered as f64 / secs,
        sent * (tabs as u64 - 1)
    );
    println!(
        "delivery latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        s.latency.value_at_quantile(0.5) as f64 / 1000.0,
        s.latency.value_at_quantile(0.99) as f64 / 1000.0,
        s.latency.value_at_quantile(0.999) as f64 / 1000.0,
        s.latency.max() as f64 / 1000.0
    );
    Ok(())
}

async fn bot(
    client: &Client,
    conversations: usize,
    questions: usize,
    timeout_secs: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let runs = futures_util::future::join_all((0..conversations).map(|c| {
        let client = client.clone();
        async move {
            let (mut ws, _) = client.widget(None).await?;
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
            for q in 0..questions {
                let text = QUESTIONS[(c + q) % QUESTIONS.len()];
                let frame = json!({"type": "message", "client_id": format!("q{q}"), "text": text});
                let sent = Instant::now();
                ws.send(Message::text(frame.to_string())).await?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
                loop {
                    let next = tokio::time::timeout_at(deadline, ws.next())
                        .await
                        .context("no bot reply in time")?
                        .context("socket closed")??;
                    let Message::Text(t) = next else { continue };
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "state" && v["state"] != "bot" {
                        bail!("conversation {c} escalated at question {q} ({text})");
                    }
                    if v["type"] == "message" && v["author"] == "bot" {
                        latency.record(sent.elapsed().as_micros().max(1) as u64)?;
                        let kind = v["reply"]["kind"].as_str().unwrap_or("?").to_owned();
                        *kinds.entry(kind).or_default() += 1;
                        break;
                    }
                }
            }
            anyhow::Ok((latency, kinds))
        }
    }))
    .await;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for run in runs {
        let (h, k) = run?;
        latency.add(&h)?;
        for (kind, n) in k {
            *kinds.entry(kind).or_default() += n;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bot replies: {} in {secs:.1} s ({:.0}/s) over {conversations} conversations; kinds: {kinds:?}",
        latency.len(),
        latency.len() as f64 / secs
    );
    println!(
        "question to reply: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.value_at_quantile(0.5) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0
    );
    Ok(())
}
