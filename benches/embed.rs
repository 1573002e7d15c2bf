//! Embedding speed: one text at a time, batches of 32, and the micro-batching worker under one
//! and 64 concurrent callers, on the 16 support sentences of `benches/sentences.txt` (the same ones
//! `../shared/baselines/onnx_embed_bench.py` uses). Run with `cargo bench --bench embed`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::ai::{EmbedHandle, Embedder, EmbedderOptions, WorkerConfig};
use tokio::runtime::Runtime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sentences() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("benches/sentences.txt"))
        .expect("benches/sentences.txt is in the repository");
    text.lines().map(str::to_owned).collect()
}

fn embedder() -> Embedder {
    Embedder::load(
        root().join(Embedder::DEFAULT_DIR),
        EmbedderOptions::default(),
    )
    .expect("the model in models/minilm loads")
}

fn direct(c: &mut Criterion) {
    let embedder = embedder();
    let sentences = sentences();
    let mut group = c.benchmark_group("embed");
    group.throughput(Throughput::Elements(1));
    let mut next = 0;
    group.bench_function("batch1", |b| {
        b.iter(|| {
            next = (next + 1) % sentences.len();
            black_box(embedder.embed(&sentences[next]).expect("embeds"))
        })
    });
    let batch: Vec<&str> = (0..32)
        .map(|i| sentences[i % sentences.len()].as_str())
        .collect();
    group.throughput(Throughput::Elements(32));
    group.bench_function("batch32", |b| {
        b.iter(|| black_box(embedder.embed_batch(&batch).expect("embeds")))
    });
    group.finish();
}

/// `callers` tasks each embed one sentence per iteration, concurrently, through the worker.
fn concurrent(handle: &EmbedHandle, runtime: &Runtime, callers: usize, iters: u64) -> Duration {
    let sentences = sentences();
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|caller| {
                let (handle, sentences) = (handle.clone(), sentences.clone());
                tokio::spawn(async move {
                    for i in 0..iters as usize {
                        let text = &sentences[(caller + i) % sentences.len()];
                        black_box(handle.embed(text.as_str()).await.expect("embeds"));
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller finishes");
        }
        start.elapsed()
    })
}

/// The worker with its default batching wait and with none, under one caller (what the wait
/// costs at light load) and 64 concurrent callers (what batching gains under load).
fn worker(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let mut group = c.benchmark_group("embed_worker");
    group.measurement_time(Duration::from_secs(8));
    for wait_ms in [1, 0] {
        let config = WorkerConfig {
            max_wait: Duration::from_millis(wait_ms),
            ..WorkerConfig::default()
        };
        let handle = EmbedHandle::spawn(embedder(), config).expect("worker starts");
        for callers in [1, 64] {
            group.throughput(Throughput::Elements(callers as u64));
            let name = format!("max_wait_{wait_ms}ms/{callers}_callers");
            group.bench_function(name, |b| {
                b.iter_custom(|iters| concurrent(&handle, &runtime, callers, iters))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, direct, worker);
criterion_main!(benches);
