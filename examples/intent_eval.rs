//! Trains an intent head on one CSV (`text,label`) and evaluates it on another, choosing the
//! out-of-scope threshold on a validation CSV when one is given; prints a JSON report. The
//! driver behind docs/ai-quality.md until `switchboard eval intents` wires the same functions:
//!
//!     cargo run --release --example intent_eval -- TRAIN.csv TEST.csv [VAL.csv]

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use switchboard::ai::intent::{
    IntentHead, TrainOptions, choose_threshold, data_hash, embed_examples, evaluate,
    read_labelled_csv,
};
use switchboard::ai::{Embedder, EmbedderOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let (train, test) = match args.as_slice() {
        [train, test, ..] => (train, test),
        _ => anyhow::bail!("usage: intent_eval TRAIN.csv TEST.csv [VAL.csv]"),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let embedder = Embedder::load(root.join(Embedder::DEFAULT_DIR), EmbedderOptions::default())?;

    let start = Instant::now();
    let train_rows = read_labelled_csv(train)?;
    let train_set = embed_examples(&embedder, &train_rows)?;
    let embed_s = start.elapsed().as_secs_f64();
    let options = TrainOptions::default();
    let mut head = IntentHead::train(&train_set, data_hash(&train_rows), options)?;
    let train_s = start.elapsed().as_secs_f64();

    let validation = match args.get(2) {
        Some(val) => {
            let val_set = embed_examples(&embedder, &read_labelled_csv(val)?)?;
            Some(choose_threshold(&mut head, &val_set)?)
        }
        None => None,
    };
    let test_set = embed_examples(&embedder, &read_labelled_csv(test)?)?;
    let metrics = evaluate(&head, &test_set).context("evaluating")?;
    let report = serde_json::json!({
        "train": train, "test": test, "validation_file": args.get(2),
        "train_examples": train_set.len(),
        "labels": head.info().labels.len(),
        "threshold": head.info().threshold,
        "seconds": { "embed_train_set": embed_s, "embed_and_train": train_s },
        "validation": validation,
        "test_metrics": metrics,
        "options": head.info().options,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
