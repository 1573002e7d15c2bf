//! The whole engine per message, unloaded: `analyze` (embedding through the worker, intent,
//! sentiment, entities, hybrid retrieval) plus `respond`, one message at a time, on the 16
//! support sentences of `benches/sentences.txt`; prints percentiles and the stages' means.
//! With a fine-tuned intent encoder's folder (`switchboard train intents --fine-tune DIR`) the
//! engine runs as with `ai.intent_encoder` set, with a query encoder's (`switchboard train
//! retrieval --out DIR`) as with `ai.query_encoder` set: one more encoder pass per message
//! each (`-` for none).
//!
//!     cargo run --release --example engine_latency -- [ROUNDS] [INTENT_ENCODER_DIR|-] [QUERY_ENCODER_DIR]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use switchboard::ai::{ConversationContext, Engine};
use switchboard::config::Settings;
use switchboard::kb::KnowledgeBase;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 50,
    };
    let mut settings = Settings::default().ai;
    settings.models_dir = root.join("models");
    settings.knowledge_base = root.join("knowledge-base");
    settings.cache_dir = root.join("data/cache");
    let folder = |n: usize| {
        std::env::args()
            .nth(n)
            .filter(|a| a != "-")
            .map(PathBuf::from)
    };
    settings.intent_encoder = folder(2);
    settings.query_encoder = folder(3);
    let kb = KnowledgeBase::read(&settings.knowledge_base)?;
    let (engine, _) = Engine::load(&settings.engine(), &kb, &Default::default())?;
    let engine = Arc::new(engine);
    let text = std::fs::read_to_string(root.join("benches/sentences.txt"))?;
    let sentences: Vec<&str> = text.lines().collect();

    for s in &sentences {
        engine.analyze(s).await?;
    }
    let mut total = Vec::new();
    let mut stages = [0.0f64; 6];
    for _ in 0..rounds {
        for s in &sentences {
            let start = Instant::now();
            let analysis = engine.analyze(s).await?;
            let t = Instant::now();
            let reply = engine.respond(&analysis, &ConversationContext::default());
            let respond_ms = t.elapsed().as_secs_f64() * 1e3;
            total.push(start.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(reply);
            let p = &analysis.timings;
            for (sum, x) in stages.iter_mut().zip([
                p.embed_ms,
                p.intent_ms,
                p.sentiment_ms,
                p.entities_ms,
                p.retrieval_ms,
                respond_ms,
            ]) {
                *sum += x;
            }
        }
    }
    total.sort_by(f64::total_cmp);
    let at = |q: f64| total[((total.len() as f64 * q) as usize).min(total.len() - 1)];
    let n = total.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "messages": total.len(),
            "analyze_and_respond_ms": { "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0) },
            "mean_stage_ms": {
                "embed": stages[0] / n, "intent": stages[1] / n, "sentiment": stages[2] / n,
                "entities": stages[3] / n, "retrieval": stages[4] / n, "respond": stages[5] / n,
            },
        })
    );
    Ok(())
}
