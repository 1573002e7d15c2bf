//! The intent head on a small support data set: it learns the intents, rejects what is out of
//! scope, and survives a save and load unchanged.

use std::path::PathBuf;

use switchboard::ai::intent::{
    IntentHead, LabelledText, OUT_OF_SCOPE, TrainOptions, choose_threshold, data_hash,
    embed_examples, evaluate,
};
use switchboard::ai::{Embedder, EmbedderOptions};

fn rows(pairs: &[(&str, &str)]) -> Vec<LabelledText> {
    pairs
        .iter()
        .map(|(label, text)| LabelledText {
            text: (*text).into(),
            label: (*label).into(),
        })
        .collect()
}

#[test]
fn learns_intents_rejects_out_of_scope_and_round_trips() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let embedder = Embedder::load(root.join(Embedder::DEFAULT_DIR), EmbedderOptions::default())
        .expect("the model in models/minilm loads");
    let train = rows(&[
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
        (OUT_OF_SCOPE, "what is the capital of france"),
        (OUT_OF_SCOPE, "tell me a joke about penguins"),
        (OUT_OF_SCOPE, "how tall is mount everest"),
    ]);
    let test = rows(&[
        ("refund", "can I have a refund for yesterday's ride"),
        ("lost_item", "I forgot my keys in the taxi"),
        ("human_agent", "get me a human agent"),
        (OUT_OF_SCOPE, "what's a good recipe for pancakes"),
    ]);
    let train_set = embed_examples(&embedder, &train).expect("embeds");
    let test_set = embed_examples(&embedder, &test).expect("embeds");
    let options = TrainOptions {
        epochs: 60,
        batch_size: 8,
        ..TrainOptions::default()
    };
    let mut head =
        IntentHead::train(&train_set, data_hash(&train), options.clone()).expect("trains");
    let again = IntentHead::train(&train_set, data_hash(&train), options).expect("trains");
    let refs: Vec<_> = test_set.iter().map(|(e, _)| e).collect();
    assert_eq!(
        again.scores(&refs).expect("scores"),
        head.scores(&refs).expect("scores"),
        "the same data and seed give the same head"
    );
    let validation = choose_threshold(&mut head, &train_set, 1.0).expect("threshold");
    assert_eq!(validation.oos_recall, Some(1.0));

    let metrics = evaluate(&head, &test_set).expect("evaluates");
    assert_eq!(metrics.accuracy, 1.0, "{metrics:?}");
    assert_eq!(metrics.oos_recall, Some(1.0));

    let dir = tempfile::tempdir().expect("temp dir");
    head.save(dir.path(), "intents").expect("saves");
    let loaded = IntentHead::load(dir.path(), "intents").expect("loads");
    assert_eq!(loaded.info().labels, head.info().labels);
    assert_eq!(loaded.info().threshold, head.info().threshold);
    assert_eq!(loaded.info().data_hash, data_hash(&train));
    assert_eq!(
        loaded.predict(&refs).expect("predicts"),
        head.predict(&refs).expect("predicts")
    );

    head.keep_anchors(&train_set).expect("keeps anchors");
    assert_eq!(head.info().anchors, 12, "the in-scope examples only");
    let scores = head.scores(&refs).expect("scores");
    for (score, (embedding, label)) in scores.iter().zip(&test_set) {
        let nearest = train_set
            .iter()
            .filter(|(_, l)| l != OUT_OF_SCOPE)
            .map(|(a, _)| {
                let dot: f32 = a
                    .as_slice()
                    .iter()
                    .zip(embedding.as_slice())
                    .map(|(x, y)| x * y)
                    .sum();
                dot
            })
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(
            (score.scope - score.confidence * nearest).abs() < 1e-4,
            "{label}: scope {} is not confidence {} × nearest cosine {nearest}",
            score.scope,
            score.confidence
        );
    }
    head.save(dir.path(), "anchored").expect("saves");
    let loaded = IntentHead::load(dir.path(), "anchored").expect("loads");
    assert_eq!(loaded.info().anchors, 12);
    assert_eq!(loaded.scores(&refs).expect("scores"), scores);
}
