//! Batch-1 latency percentiles and batch-32 throughput measured exactly as
//! `../shared/baselines/onnx_embed_bench.py` measures ONNX Runtime (same sentences, warm-up,
//! rounds and repetitions, tokenisation and pooling included), for a like-for-like comparison:
//!
//!     cargo run --release --example embed_latency -- [THREADS]

use std::path::PathBuf;
use std::time::Instant;

use switchboard::ai::{Embedder, EmbedderOptions};

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let threads = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => EmbedderOptions::default().threads,
    };
    let embedder = Embedder::load(
        root.join(Embedder::DEFAULT_DIR),
        EmbedderOptions { threads },
    )?;
    let text = std::fs::read_to_string(root.join("benches/sentences.txt"))?;
    let sentences: Vec<&str> = text.lines().collect();

    for s in &sentences[..8] {
        embedder.embed(s)?;
    }
    let mut latencies = Vec::new();
    for _ in 0..20 {
        for s in &sentences {
            let start = Instant::now();
            embedder.embed(s)?;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[(latencies.len() as f64 * q) as usize];
    let median = (latencies[latencies.len() / 2 - 1] + latencies[latencies.len() / 2]) / 2.0;

    let batch: Vec<&str> = (0..32).map(|i| sentences[i % sentences.len()]).collect();
    embedder.embed_batch(&batch)?;
    let reps = 20;
    let start = Instant::now();
    for _ in 0..reps {
        embedder.embed_batch(&batch)?;
    }
    let per_s = (32 * reps) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "runtime": "switchboard (candle-loaded MiniLM, own forward pass)",
            "threads": threads,
            "batch1_ms": { "p50": median, "p90": at(0.9), "p99": at(0.99), "n": latencies.len() },
            "batch32_sentences_per_s": per_s,
        })
    );
    Ok(())
}
