//! Fine-tuning the encoder on a few intents: the run learns (its loss falls), writes a model
//! folder the fast embedder loads, and that encoder separates the intents better than the
//! shipped one; bad input is refused with a clear error.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use switchboard::ai::intent::{LabelledText, TUNING_FILE, TuneOptions, fine_tune, read_tuning};
use switchboard::ai::{AiError, Embedder, EmbedderOptions, Embedding, Engine};
use switchboard::config::Settings;
use switchboard::kb::KnowledgeBase;

fn rows(pairs: &[(&str, &str)]) -> Vec<LabelledText> {
    pairs
        .iter()
        .map(|(label, text)| LabelledText {
            text: (*text).into(),
            label: (*label).into(),
        })
        .collect()
}

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR)
}

/// Mean cosine between examples of the same label minus that between different labels.
fn separation(embeddings: &[Embedding], examples: &[LabelledText]) -> f32 {
    let (mut same, mut same_n, mut other, mut other_n) = (0.0, 0, 0.0, 0);
    for i in 0..examples.len() {
        for j in i + 1..examples.len() {
            let c = embeddings[i].cosine(&embeddings[j]);
            if examples[i].label == examples[j].label {
                same += c;
                same_n += 1;
            } else {
                other += c;
                other_n += 1;
            }
        }
    }
    same / same_n as f32 - other / other_n as f32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tuning_learns_and_writes_an_encoder_the_embedder_and_the_engine_load() {
    let examples = rows(&[
        ("refund", "I want my money back"),
        ("refund", "please refund my last trip"),
        ("refund", "I was overcharged, give me a refund"),
        ("refund", "how do I get reimbursed for a ride"),
        ("lost_item", "I left my bag in the car"),
        ("lost_item", "my phone is still in the driver's car"),
        (
            "lost_item",
            "how do I get back something I forgot in a ride",
        ),
        ("lost_item", "I lost my wallet during my trip"),
        ("human_agent", "let me talk to a real person"),
        ("human_agent", "I want to speak to an agent"),
        ("human_agent", "connect me with a human please"),
        ("human_agent", "can a support person call me"),
    ]);
    let out = tempfile::tempdir().expect("temporary folder");
    let tuned_dir = out.path().join("tuned");
    let options = TuneOptions {
        epochs: 4,
        batch_size: 6,
        encoder_learning_rate: 1e-4,
        ..TuneOptions::default()
    };
    let mut heard = Vec::new();
    let report = fine_tune(&base(), &examples, &options, &tuned_dir, |epoch, loss| {
        heard.push((epoch, loss))
    })
    .expect("fine-tunes");
    assert_eq!(heard.len(), 4);
    assert_eq!(
        heard.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let losses = &report.epoch_losses;
    assert!(losses[3] < losses[0], "the loss falls: {losses:?}");
    assert_eq!((report.examples, report.labels), (12, 3));

    let stored = read_tuning(&tuned_dir).expect("tuning.json");
    assert_eq!(stored.epoch_losses, report.epoch_losses);
    assert_eq!(stored.data_hash, report.data_hash);

    let options = EmbedderOptions { threads: 2 };
    let shipped = Embedder::load(base(), options.clone()).expect("shipped model");
    let tuned = Embedder::load(&tuned_dir, options).expect("the tuned folder loads");
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let before = separation(&shipped.embed_batch(&texts).expect("embeds"), &examples);
    let after = separation(&tuned.embed_batch(&texts).expect("embeds"), &examples);
    assert!(
        after > before + 0.05,
        "fine-tuning pulls each intent's examples together: {before:.3} -> {after:.3}"
    );

    engine_uses_the_tuned_encoder_for_intents(&tuned_dir, out.path()).await;
}

/// With `ai.intent_encoder` set, the engine trains its head over the tuned encoder's
/// embeddings and caches it under a hash that names that encoder, so a head trained over
/// another encoder is never read back; a folder that is not a tuned encoder is refused.
async fn engine_uses_the_tuned_encoder_for_intents(tuned_dir: &Path, scratch: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut settings = Settings::default().ai;
    settings.models_dir = root.join("models");
    settings.cache_dir = scratch.join("cache");
    settings.index_dir = PathBuf::new();
    settings.intent_encoder = Some(tuned_dir.to_path_buf());
    let kb = KnowledgeBase::read(root.join("knowledge-base")).expect("the knowledge base reads");
    let (engine, _) =
        Engine::load(&settings.engine(), &kb, &Default::default()).expect("the engine loads");
    let analysis = std::sync::Arc::new(engine)
        .analyze("I left my backpack in the driver's car")
        .await
        .expect("analyses");
    assert_eq!(analysis.intent.name, "lost_item");

    let cached = std::fs::read_to_string(
        settings
            .cache_dir
            .join("intent-head-neighbours/kb-intents.json"),
    )
    .expect("the head is cached");
    let info: serde_json::Value = serde_json::from_str(&cached).expect("json");
    let tuning = std::fs::read(tuned_dir.join(TUNING_FILE)).expect("tuning.json");
    let id: String = Sha256::digest(tuning)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hash = info["data_hash"].as_str().expect("a hash");
    assert!(hash.ends_with(&format!("+{id}")), "{hash}");

    settings.intent_encoder = Some(root.join(Embedder::DEFAULT_DIR));
    let refused = Engine::load(&settings.engine(), &kb, &Default::default());
    assert!(
        matches!(refused, Err(AiError::ModelIo { ref path, .. }) if path.ends_with(TUNING_FILE)),
        "the shipped model folder is no tuned encoder"
    );
}

#[test]
fn fine_tuning_refuses_one_label_and_a_missing_model() {
    let out = tempfile::tempdir().expect("temporary folder");
    let one_label = rows(&[("refund", "refund me"), ("refund", "money back please")]);
    let err = fine_tune(
        &base(),
        &one_label,
        &TuneOptions::default(),
        &out.path().join("a"),
        |_, _| {},
    )
    .expect_err("one label cannot be told apart");
    assert!(matches!(err, AiError::TrainingData(_)), "{err:?}");

    let two = rows(&[("refund", "refund me"), ("lost_item", "I lost my bag")]);
    let err = fine_tune(
        &out.path().join("no-such-model"),
        &two,
        &TuneOptions::default(),
        &out.path().join("b"),
        |_, _| {},
    )
    .expect_err("no model there");
    assert!(matches!(err, AiError::ModelIo { .. }), "{err:?}");
    assert!(!out.path().join("b").exists(), "nothing is written");
}
