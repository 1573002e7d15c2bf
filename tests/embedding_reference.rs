//! The embedder against sentence-transformers: `tests/fixtures/reference_*.json` hold 20 texts
//! (empty, non-Latin, emoji, longer than 256 tokens among them), their token ids and their
//! embeddings as computed by sentence-transformers from the original f32 weights.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchboard::ai::{EMBEDDING_DIM, Embedder, EmbedderOptions};

#[derive(Deserialize)]
struct Tokens {
    text: String,
    input_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Reference {
    text: String,
    embedding: Vec<f32>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture is in the repository");
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

fn embedder() -> Embedder {
    Embedder::load(
        root().join(Embedder::DEFAULT_DIR),
        EmbedderOptions::default(),
    )
    .expect("the model in models/minilm loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn token_ids_equal_the_reference_tokenizer() {
    let embedder = embedder();
    let cases: Vec<Tokens> = fixture("reference_tokens.json");
    assert_eq!(cases.len(), 20);
    assert!(
        cases.iter().any(|c| c.input_ids.len() == 256),
        "covers truncation"
    );
    for case in &cases {
        let ids = embedder.token_ids(&case.text).expect("tokenizes");
        assert_eq!(ids, case.input_ids, "token ids of {:?}", case.text);
    }
}

#[test]
fn embeddings_match_sentence_transformers_alone_and_in_one_batch() {
    let embedder = embedder();
    let refs: Vec<Reference> = fixture("reference_embeddings.json");
    assert_eq!(refs.len(), 20);
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let batched = embedder.embed_batch(&texts).expect("embeds the batch");
    assert_eq!(batched.len(), refs.len());
    for (reference, in_batch) in refs.iter().zip(&batched) {
        assert_eq!(reference.embedding.len(), EMBEDDING_DIM);
        let alone = embedder.embed(&reference.text).expect("embeds");
        let (a, b) = (
            cosine(alone.as_slice(), &reference.embedding),
            cosine(in_batch.as_slice(), &reference.embedding),
        );
        assert!(a >= 0.999, "alone: cosine {a} for {:?}", reference.text);
        assert!(b >= 0.999, "in batch: cosine {b} for {:?}", reference.text);
        let norm = alone.cosine(&alone).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
}

#[test]
fn a_missing_model_is_an_error_not_a_panic() {
    let missing = Path::new("/nonexistent/minilm");
    let err = Embedder::load(missing, EmbedderOptions::default())
        .err()
        .expect("loading from a missing folder fails");
    assert!(err.to_string().contains("/nonexistent/minilm"), "{err}");
}
