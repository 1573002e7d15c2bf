//! The sentiment model: the one shipped in models/sentiment reads support messages sensibly,
//! and training from a small support file gives a model that survives a save and load.

use std::path::{Path, PathBuf};

use switchboard::ai::sentiment::{
    Sentiment, SentimentLabel, SentimentTrainOptions, TrainSources, train,
};
use switchboard::ai::{Embedder, EmbedderOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn embedder() -> Embedder {
    Embedder::load(
        root().join(Embedder::DEFAULT_DIR),
        EmbedderOptions::default(),
    )
    .expect("the model in models/minilm loads")
}

#[test]
fn the_shipped_model_reads_support_messages() {
    let embedder = embedder();
    let model = Sentiment::load(root().join(Sentiment::DEFAULT_DIR)).expect("the model loads");
    let cases = [
        (
            "You charged me twice and nobody answers, this is a disgrace",
            SentimentLabel::Negative,
        ),
        (
            "How do I change the card I pay with?",
            SentimentLabel::Neutral,
        ),
        (
            "Thank you so much, the driver was wonderful",
            SentimentLabel::Positive,
        ),
    ];
    for (text, want) in cases {
        let embedding = embedder.embed(text).expect("embeds");
        let s = model.analyze(text, &embedding).expect("scores");
        assert_eq!(s.label, want, "{text}: {s:?}");
        assert!((-1.0..=1.0).contains(&s.score));
        let sum: f32 = s.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
    }
    let angry = embedder
        .embed("This is the worst service ever")
        .expect("embeds");
    let happy = embedder.embed("Brilliant, thanks a lot").expect("embeds");
    let a = model
        .analyze("This is the worst service ever", &angry)
        .expect("scores");
    let h = model
        .analyze("Brilliant, thanks a lot", &happy)
        .expect("scores");
    assert!(a.score < -0.5 && h.score > 0.5, "{a:?} {h:?}");
    assert!(a.vader < 0.0 && h.vader > 0.0);
    assert!(
        model.analyze_batch(&["a", "b"], &[&angry]).is_err(),
        "counts differ"
    );
}

fn write_support(dir: &Path) -> PathBuf {
    let mut csv = String::from("text,label\n");
    let rows = [
        ("negative", "I was overcharged and I am furious"),
        ("negative", "the driver was rude and the car was dirty"),
        ("negative", "still no refund after two weeks, terrible"),
        ("negative", "your app keeps crashing, so annoying"),
        ("negative", "nobody answers my complaints"),
        ("negative", "awful ride, I want my money back"),
        ("neutral", "how do I add a stop"),
        ("neutral", "where can I find my receipt"),
        ("neutral", "can I pay with cash"),
        ("neutral", "what is the cancellation fee"),
        ("neutral", "please update my phone number"),
        ("neutral", "which cities do you cover"),
        ("positive", "thank you so much, great help"),
        ("positive", "the driver was lovely"),
        ("positive", "perfect, that fixed it, thanks"),
        ("positive", "excellent service as always"),
        ("positive", "I really appreciate your help"),
        ("positive", "brilliant, love the new app"),
    ];
    for (label, text) in rows {
        csv.push_str(&format!("\"{text}\",{label}\n"));
    }
    let path = dir.join("support.csv");
    std::fs::write(&path, csv).expect("writes");
    path
}

#[test]
fn trains_from_a_support_file_and_round_trips() {
    let embedder = embedder();
    let dir = tempfile::tempdir().expect("temp dir");
    let sources = TrainSources {
        sst2: None,
        cr: None,
        support: Some(write_support(dir.path())),
    };
    let mut options = SentimentTrainOptions::default();
    options.head.epochs = 40;
    options.head.batch_size = 8;
    options.holdout_every = 3;
    let model = train(&embedder, &sources, options).expect("trains");
    let info = model.info();
    assert_eq!(info.sources.len(), 1);
    assert_eq!(
        (info.sources[0].head_rows, info.sources[0].fusion_rows),
        (12, 6)
    );
    assert_eq!(info.validation[0].examples, 6);
    assert_eq!(info.data_hash.len(), 64);

    let out = dir.path().join("model");
    model.save(&out).expect("saves");
    let loaded = Sentiment::load(&out).expect("loads");
    let text = "thanks a lot, you were great";
    let embedding = embedder.embed(text).expect("embeds");
    let before = model.analyze(text, &embedding).expect("scores");
    let after = loaded.analyze(text, &embedding).expect("scores");
    assert_eq!(before, after);
    assert_eq!(after.label, SentimentLabel::Positive, "{after:?}");

    std::fs::write(out.join("sentiment.json"), "{}").expect("writes");
    assert!(
        Sentiment::load(&out).is_err(),
        "a broken sidecar is an error"
    );
}

#[test]
fn training_without_neutral_examples_is_refused() {
    let embedder = embedder();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("binary.csv");
    std::fs::write(
        &path,
        "text,label\ngreat,positive\nawful,negative\nfine,positive\n",
    )
    .expect("writes");
    let sources = TrainSources {
        sst2: None,
        cr: None,
        support: Some(path),
    };
    let Err(err) = train(&embedder, &sources, SentimentTrainOptions::default()) else {
        panic!("trained without neutral examples");
    };
    assert!(err.to_string().contains("neutral"), "{err}");
}
