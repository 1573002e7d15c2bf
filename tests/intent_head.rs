//! The intent head on a small support data set: it learns the intents, rejects what is out of
//! scope, and survives a save and load unchanged.

mod common;

use std::path::PathBuf;

use common::rows;
use switchboard::ai::intent::{
    IntentHead, LabelledText, OUT_OF_SCOPE, TrainOptions, choose_threshold, data_hash,
    embed_examples, evaluate, train_calibrated,
};
use switchboard::ai::{Embedder, EmbedderOptions};

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

    head.keep_neighbours(&train_set).expect("keeps neighbours");
    assert_eq!(
        head.info().neighbours,
        15,
        "every example, out of scope too"
    );
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

    let network = head.probabilities(&refs).expect("probabilities");
    head.set_neighbour_weight(1.0);
    let votes = head.probabilities(&refs).expect("probabilities");
    assert_ne!(votes, network, "the vote is not the network");
    for row in &votes {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    head.set_neighbour_weight(0.25);
    let mixed = head.probabilities(&refs).expect("probabilities");
    for ((m, n), v) in mixed
        .iter()
        .flatten()
        .zip(network.iter().flatten())
        .zip(votes.iter().flatten())
    {
        assert!(
            (m - (0.75 * n + 0.25 * v)).abs() < 1e-5,
            "{m} is not 0.75·{n} + 0.25·{v}"
        );
    }
    let scores = head.scores(&refs).expect("scores");
    head.save(dir.path(), "neighbours").expect("saves");
    let loaded = IntentHead::load(dir.path(), "neighbours").expect("loads");
    assert_eq!(loaded.info().neighbours, 15);
    assert_eq!(loaded.info().neighbour_weight, 0.25);
    assert_eq!(loaded.scores(&refs).expect("scores"), scores);
}

#[test]
fn the_neighbour_weight_is_chosen_on_held_out_examples() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let embedder = Embedder::load(root.join(Embedder::DEFAULT_DIR), EmbedderOptions::default())
        .expect("the model in models/minilm loads");
    let texts = [
        (
            "refund",
            [
                "I want my money back",
                "please refund my last trip",
                "I was overcharged, give me a refund",
                "how do I get reimbursed for a ride",
                "refund the fare of yesterday's trip",
            ],
        ),
        (
            "lost_item",
            [
                "I left my bag in the car",
                "my phone is still in the driver's car",
                "how do I get back something I forgot in a ride",
                "I lost my wallet during my trip",
                "my keys stayed in the taxi",
            ],
        ),
        (
            "human_agent",
            [
                "let me talk to a real person",
                "I want to speak to an agent",
                "connect me with a human please",
                "can a support person call me",
                "is there a human I can chat with",
            ],
        ),
    ];
    let train: Vec<LabelledText> = texts
        .iter()
        .flat_map(|(label, texts)| {
            texts.iter().map(|text| LabelledText {
                text: (*text).into(),
                label: (*label).into(),
            })
        })
        .collect();
    let embedded = embed_examples(&embedder, &train).expect("embeds");
    let (head, calibration) =
        train_calibrated(&embedded, data_hash(&train), TrainOptions::default()).expect("trains");
    assert_eq!(
        head.info().neighbours,
        15,
        "the final head keeps every example"
    );
    assert_eq!(head.info().neighbour_weight, calibration.neighbour_weight);
    assert!((0.0..=1.0).contains(&calibration.neighbour_weight));
    assert_eq!(
        calibration.after.examples, 3,
        "one example in five of each intent"
    );

    // The criterion: of the weights tried, the chosen one gives held-out labels the highest
    // probability. Here a head trained on the first four examples of each intent, with them as
    // neighbours, chooses on the fifth.
    let held: Vec<_> = embedded.iter().skip(4).step_by(5).cloned().collect();
    let fit: Vec<_> = embedded
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 4)
        .map(|(_, e)| e.clone())
        .collect();
    let mut probe =
        IntentHead::train(&fit, data_hash(&train), TrainOptions::default()).expect("trains");
    probe.keep_neighbours(&fit).expect("keeps neighbours");
    let chosen = probe.choose_neighbour_weight(&held).expect("chooses");
    let refs: Vec<_> = held.iter().map(|(e, _)| e).collect();
    let mut nll = |weight: f32| -> f64 {
        probe.set_neighbour_weight(weight);
        let labels = probe.info().labels.clone();
        probe
            .probabilities(&refs)
            .expect("probabilities")
            .iter()
            .zip(&held)
            .map(|(p, (_, l))| -f64::from(p[labels.binary_search(l).expect("known")]).ln())
            .sum()
    };
    let at_chosen = nll(chosen);
    for step in 0..=10 {
        let weight = step as f32 / 10.0;
        assert!(
            at_chosen <= nll(weight) + 1e-9,
            "weight {weight} beats the chosen {chosen}"
        );
    }
}
