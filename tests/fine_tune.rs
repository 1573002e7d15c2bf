//! Fine-tuning the encoder on a few intents: the run learns (its loss falls), writes a model
//! folder the fast embedder loads, and that encoder separates the intents better than the
//! shipped one; the head trained with it is served for those intents, and a head is trained
//! over it for others; bad input is refused with a clear error. A query encoder tuned for
//! retrieval brings its training questions nearer the passages that answer them, and the
//! engine embeds questions with it when configured.

mod common;

use std::path::{Path, PathBuf};

use common::rows;
use sha2::{Digest, Sha256};
use switchboard::ai::intent::{
    LabelledText, TrainOptions, TuneOptions, fine_tune, read_joint_head, read_tuning,
    tuned_data_hash, tuned_encoder_id,
};
use switchboard::ai::retrieval::{
    Judged, Passage, QueryTuneOptions, QueryTuneReport, TrainingQuery, read_query_tuning,
    training_queries, tune_queries, tuning_queries,
};
use switchboard::ai::{
    AiError, Embedder, EmbedderOptions, Embedding, Engine, TUNING_FILE, passage_questions, passages,
};
use switchboard::config::{AiSettings, Settings};
use switchboard::kb::{Intent, KnowledgeBase};

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

/// The shipped knowledge base's articles with three small intents in place of its own.
fn small_knowledge_base() -> KnowledgeBase {
    let mut kb =
        KnowledgeBase::read(root().join("knowledge-base")).expect("the knowledge base reads");
    let intent = |name: &str, examples: &[&str]| Intent {
        name: name.into(),
        description: None,
        examples: examples.iter().map(|e| (*e).into()).collect(),
        answer: None,
        article: None,
        escalate: false,
        skill: None,
    };
    kb.intents = vec![
        intent(
            "human_agent",
            &[
                "let me talk to a real person",
                "I want to speak to an agent",
                "connect me with a human please",
                "can a support person call me",
            ],
        ),
        intent(
            "lost_item",
            &[
                "I left my bag in the car",
                "my phone is still in the driver's car",
                "how do I get back something I forgot in a ride",
                "I lost my wallet during my trip",
            ],
        ),
        intent(
            "refund",
            &[
                "I want my money back",
                "please refund my last trip",
                "I was overcharged, give me a refund",
                "how do I get reimbursed for a ride",
            ],
        ),
    ];
    kb
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tuning_learns_and_writes_an_encoder_the_embedder_and_the_engine_load() {
    let small = small_knowledge_base();
    let examples: Vec<LabelledText> = small
        .intent_examples()
        .into_iter()
        .map(|(text, label)| LabelledText { text, label })
        .collect();
    let out = tempfile::tempdir().expect("temporary folder");
    let tuned_dir = out.path().join("tuned");
    let options = TuneOptions {
        epochs: 8,
        batch_size: 6,
        encoder_learning_rate: 1e-4,
        ..TuneOptions::default()
    };
    let mut heard = Vec::new();
    let report = fine_tune(&base(), &examples, &options, &tuned_dir, |epoch, loss| {
        heard.push((epoch, loss))
    })
    .expect("fine-tunes");
    assert_eq!(
        heard.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let losses = &report.epoch_losses;
    assert!(losses[7] < losses[0], "the loss falls: {losses:?}");
    assert_eq!((report.examples, report.labels), (12, 3));

    let stored = read_tuning(&tuned_dir).expect("tuning.json");
    assert_eq!(stored.epoch_losses.len(), report.epoch_losses.len());
    for (stored, run) in stored.epoch_losses.iter().zip(&report.epoch_losses) {
        assert!(
            (stored - run).abs() <= 1e-12 * run.abs(),
            "{stored} != {run}"
        );
    }
    assert_eq!(stored.data_hash, report.data_hash);

    let options = EmbedderOptions { threads: 2 };
    let shipped = Embedder::load(base(), options.clone()).expect("shipped model");
    let tuned = Embedder::load(&tuned_dir, options).expect("the tuned folder loads");
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let tuned_embeddings = tuned.embed_batch(&texts).expect("embeds");
    let before = separation(&shipped.embed_batch(&texts).expect("embeds"), &examples);
    let after = separation(&tuned_embeddings, &examples);
    assert!(
        after > before + 0.05,
        "fine-tuning pulls each intent's examples together: {before:.3} -> {after:.3}"
    );

    let joint = read_joint_head(&tuned_dir).expect("the joint head is in the folder");
    let id = tuned_encoder_id(&tuned_dir).expect("a tuned encoder");
    assert_eq!(joint.info().labels, ["human_agent", "lost_item", "refund"]);
    assert_eq!(
        joint.info().data_hash,
        tuned_data_hash(&report.data_hash, &id)
    );
    let refs: Vec<&Embedding> = tuned_embeddings.iter().collect();
    let right = joint
        .predict(&refs)
        .expect("predicts")
        .iter()
        .zip(&examples)
        .filter(|(p, e)| p.intent.as_deref() == Some(e.label.as_str()))
        .count();
    assert_eq!(
        right, 12,
        "the head trained with the encoder knows its examples"
    );

    let scratch = out.path();
    assert_eq!(
        eval_head(&tuned_dir, &examples, scratch),
        "trained with the encoder",
        "eval intents over a folder tuned on the same file takes its head"
    );
    assert_eq!(
        eval_head(&tuned_dir, &examples[1..], scratch),
        "trained over the embeddings",
        "and trains one over the encoder for any other file"
    );

    let info = engine_head(&tuned_dir, &small, &scratch.join("small")).await;
    assert_eq!(
        info["options"]["batch_size"], 6,
        "the engine takes the head trained with the encoder on these very intents: {info}"
    );
    assert_eq!(info["temperature"], 1.0);
    assert_eq!(info["neighbours"], 12);
    let kb = KnowledgeBase::read(root().join("knowledge-base")).expect("the knowledge base reads");
    let info = engine_head(&tuned_dir, &kb, &scratch.join("full")).await;
    assert_eq!(
        info["options"]["batch_size"],
        TrainOptions::default().batch_size,
        "for other intents the engine trains a head over the tuned encoder: {info}"
    );
    let hash = info["data_hash"].as_str().expect("a hash");
    assert!(hash.ends_with(&format!("+{id}")), "{hash}");
    let tuning = std::fs::read(tuned_dir.join(TUNING_FILE)).expect("tuning.json");
    let digest: String = Sha256::digest(tuning)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, digest, "a tuned encoder is named by its tuning report");

    let mut settings = engine_settings(&tuned_dir, &scratch.join("refused"));
    settings.intent_encoder = Some(base());
    let refused = Engine::load(&settings.engine(), &kb, &Default::default());
    assert!(
        matches!(refused, Err(AiError::ModelIo { ref path, .. }) if path.ends_with(TUNING_FILE)),
        "the shipped model folder is no tuned encoder"
    );

    let mut settings = engine_settings(&tuned_dir, &scratch.join("refused"));
    settings.query_encoder = Some(tuned_dir.clone());
    let refused = Engine::load(&settings.engine(), &kb, &Default::default())
        .err()
        .map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("an intent encoder") && e.contains("not a query encoder")),
        "an intent encoder is no query encoder: {refused:?}"
    );
}

/// Runs the `switchboard` binary with `args` on two encoder threads, writing its report into
/// `scratch`; checks that it succeeded and returns the report.
fn switchboard_report(args: &[&std::ffi::OsStr], scratch: &Path) -> serde_json::Value {
    let report = scratch.join("report.json");
    switchboard(&[args, &["--report".as_ref(), report.as_os_str()]].concat());
    serde_json::from_str(&std::fs::read_to_string(&report).expect("the report")).expect("json")
}

/// Runs the `switchboard` binary with `args` on two encoder threads and checks that it
/// succeeded.
fn switchboard(args: &[&std::ffi::OsStr]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .args(["--threads", "2"])
        .output()
        .expect("runs switchboard");
    assert!(output.status.success(), "{output:?}");
}

/// Runs `switchboard eval intents --minilm TUNED` with `examples` as both training and test
/// file; returns which head its report says it used, after checking that head got every test
/// example right.
fn eval_head(tuned_dir: &Path, examples: &[LabelledText], scratch: &Path) -> String {
    let csv = scratch.join("examples.csv");
    let mut text = String::from("text,label\n");
    for e in examples {
        text.push_str(&format!("\"{}\",{}\n", e.text, e.label));
    }
    std::fs::write(&csv, text).expect("writes the CSV");
    let report = switchboard_report(
        &[
            "eval".as_ref(),
            "intents".as_ref(),
            "--minilm".as_ref(),
            tuned_dir.as_os_str(),
            "--train".as_ref(),
            csv.as_os_str(),
            "--test".as_ref(),
            csv.as_os_str(),
        ],
        scratch,
    );
    assert_eq!(report["test_metrics"]["accuracy"], 1.0, "{report}");
    report["head"].as_str().expect("the head").to_owned()
}

fn engine_settings(tuned_dir: &Path, cache: &Path) -> AiSettings {
    let mut settings = Settings::default().ai;
    settings.models_dir = root().join("models");
    settings.cache_dir = cache.to_path_buf();
    settings.index_dir = PathBuf::new();
    settings.intent_encoder = Some(tuned_dir.to_path_buf());
    settings
}

/// Loads the engine on `kb` with `ai.intent_encoder` set to `tuned_dir` and checks that it
/// answers "I left my backpack in the driver's car" with `lost_item`; returns the sidecar of
/// the head it cached, whose hash names the encoder (so a head trained over another encoder
/// is never read back).
async fn engine_head(tuned_dir: &Path, kb: &KnowledgeBase, cache: &Path) -> serde_json::Value {
    let settings = engine_settings(tuned_dir, cache);
    let (engine, _) =
        Engine::load(&settings.engine(), kb, &Default::default()).expect("the engine loads");
    let analysis = std::sync::Arc::new(engine)
        .analyze("I left my backpack in the driver's car")
        .await
        .expect("analyses");
    assert_eq!(analysis.intent.name, "lost_item");
    let cached = std::fs::read_to_string(cache.join("intent-head-neighbours/kb-intents.json"))
        .expect("the head is cached");
    serde_json::from_str(&cached).expect("json")
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

/// The shipped knowledge base as a retrieval set, as `eval retrieval --kb` and `train
/// retrieval` read it: its passages as the corpus, and each example of an intent that names
/// an article as a question answered by that article's passages.
fn knowledge_base_retrieval_set() -> (Vec<Passage>, Vec<Judged>) {
    let kb = KnowledgeBase::read(root().join("knowledge-base")).expect("the knowledge base reads");
    let corpus = passages(&kb);
    let questions = passage_questions(&kb, &corpus);
    let with_article: usize = kb
        .intents
        .iter()
        .filter(|i| i.article.is_some())
        .map(|i| i.examples.len())
        .sum();
    assert_eq!(questions.len(), with_article, "every article has passages");
    for q in &questions {
        let article = q.id.rsplit_once('-').map(|(intent, _)| intent);
        let intent = kb.intents.iter().find(|i| Some(i.name.as_str()) == article);
        let prefix = format!(
            "{}#",
            intent.and_then(|i| i.article.clone()).unwrap_or_default()
        );
        assert!(
            !q.relevant.is_empty() && q.relevant.iter().all(|id| id.starts_with(&prefix)),
            "{q:?} is answered by its intent's article"
        );
    }
    (corpus, questions)
}

/// Mean over `questions` of minus the log of the probability the passages answering each
/// get in a softmax over all passages' cosines, scaled by 20: the loss query tuning lowers.
fn retrieval_loss(embedder: &Embedder, corpus: &[Embedding], questions: &[TrainingQuery]) -> f32 {
    let texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
    let asked = embedder.embed_all(&texts).expect("embeds the questions");
    let log_sum_exp = |xs: &[f32]| {
        let max = xs.iter().copied().fold(f32::MIN, f32::max);
        max + xs.iter().map(|x| (x - max).exp()).sum::<f32>().ln()
    };
    let total: f32 = asked
        .iter()
        .zip(questions)
        .map(|(q, question)| {
            let logits: Vec<f32> = corpus.iter().map(|p| 20.0 * q.cosine(p)).collect();
            let answering: Vec<f32> = question.relevant.iter().map(|&i| logits[i]).collect();
            log_sum_exp(&logits) - log_sum_exp(&answering)
        })
        .sum();
    total / questions.len() as f32
}

#[test]
fn a_query_encoder_tuned_for_retrieval_brings_its_questions_nearer_their_passages() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let (corpus, queries) = knowledge_base_retrieval_set();
    let tuned_dir = scratch.path().join("queries-tuned");
    let kb_dir = root().join("knowledge-base");
    let report = switchboard_report(
        &[
            "eval".as_ref(),
            "retrieval".as_ref(),
            "--tune-epochs".as_ref(),
            "2".as_ref(),
            "--kb".as_ref(),
            kb_dir.as_os_str(),
            "--tune-queries".as_ref(),
            tuned_dir.as_os_str(),
        ],
        scratch.path(),
    );
    let training = tuning_queries(&corpus, &queries).expect("every question names a passage");
    let n = queries.len();
    assert_eq!(training.len(), 2 * (n / 5) + (n % 5).min(2));
    assert_eq!(report["passages"], corpus.len());
    assert_eq!(report["tuning_queries"], training.len());
    assert_eq!(
        report["held_out"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );

    let tuning: QueryTuneReport = serde_json::from_str(
        &std::fs::read_to_string(tuned_dir.join(TUNING_FILE)).expect("tuning.json"),
    )
    .expect("a query tuning report");
    assert_eq!(tuning.queries, training.len());
    assert_eq!(tuning.passages, corpus.len());
    assert_eq!(tuning.epoch_losses.len(), 2);
    assert!(
        tuning.epoch_losses[1] < tuning.epoch_losses[0],
        "{:?}",
        tuning.epoch_losses
    );

    let options = EmbedderOptions { threads: 2 };
    let shipped = Embedder::load(base(), options.clone()).expect("the shipped encoder");
    let tuned = Embedder::load(&tuned_dir, options).expect("the tuned folder loads");
    let texts: Vec<String> = corpus.iter().map(Passage::embedding_text).collect();
    let embedded = shipped.embed_all(&texts).expect("embeds the corpus");
    let before = retrieval_loss(&shipped, &embedded, &training);
    let after = retrieval_loss(&tuned, &embedded, &training);
    assert!(
        after < before * 0.9,
        "the tuned encoder's loss {after} is well below the shipped one's {before}"
    );

    let refused = tuned_encoder_id(&tuned_dir)
        .expect_err("a query encoder is not an intent encoder")
        .to_string();
    assert!(refused.contains("a query encoder"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_encoder_trained_on_the_knowledge_base_serves_the_engine_s_retrieval() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let (corpus, questions) = knowledge_base_retrieval_set();
    let tuned_dir = scratch.path().join("query-encoder");
    switchboard(&[
        "train".as_ref(),
        "retrieval".as_ref(),
        "--tune-epochs".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        tuned_dir.as_os_str(),
    ]);
    let tuning = read_query_tuning(&tuned_dir).expect("a query encoder's tuning report");
    assert_eq!(tuning.queries, questions.len(), "trained on every question");
    assert_eq!(tuning.passages, corpus.len());
    assert_eq!(tuning.epoch_losses.len(), 1);

    let options = EmbedderOptions { threads: 2 };
    let shipped = Embedder::load(base(), options.clone()).expect("the shipped encoder");
    let tuned = Embedder::load(&tuned_dir, options).expect("the tuned folder loads");
    let texts: Vec<String> = corpus.iter().map(Passage::embedding_text).collect();
    let embedded = shipped.embed_all(&texts).expect("embeds the corpus");
    let training = training_queries(&corpus, &questions).expect("every question names a passage");
    let before = retrieval_loss(&shipped, &embedded, &training);
    let after = retrieval_loss(&tuned, &embedded, &training);
    assert!(after < before, "loss {before} -> {after}");

    let kb = KnowledgeBase::read(root().join("knowledge-base")).expect("the knowledge base reads");
    let mut settings = Settings::default().ai;
    settings.models_dir = root().join("models");
    settings.cache_dir = root().join("data/cache");
    settings.index_dir = PathBuf::new();
    settings.query_encoder = Some(tuned_dir.clone());
    let (engine, _) =
        Engine::load(&settings.engine(), &kb, &Default::default()).expect("the engine loads");
    let question = "I left my backpack in the driver's car";
    let analysis = std::sync::Arc::new(engine)
        .analyze(question)
        .await
        .expect("analyses");
    let hit = analysis.passages.first().expect("a passage");
    let passage = corpus
        .iter()
        .position(|p| p.id == hit.id)
        .expect("a passage of the corpus");
    let by_tuned = tuned.embed_all(&[question]).expect("embeds")[0].cosine(&embedded[passage]);
    let by_shipped = shipped.embed_all(&[question]).expect("embeds")[0].cosine(&embedded[passage]);
    assert!(
        (hit.dense - by_tuned).abs() < 1e-4 && (hit.dense - by_shipped).abs() > 1e-3,
        "retrieval embeds the question with the query encoder: {} against {by_tuned} (tuned) \
         and {by_shipped} (shipped)",
        hit.dense
    );
    assert!(hit.id.starts_with("lost-item-rider#"), "{}", hit.id);

    settings.query_encoder = Some(base());
    let refused = Engine::load(&settings.engine(), &kb, &Default::default());
    assert!(
        matches!(refused, Err(AiError::ModelIo { ref path, .. }) if path.ends_with(TUNING_FILE)),
        "the shipped model folder is no query encoder"
    );
}

#[test]
fn query_tuning_refuses_questions_without_a_passage() {
    let out = tempfile::tempdir().expect("temporary folder");
    let corpus = vec![Passage {
        id: "a#0".into(),
        title: "Refunds".into(),
        text: "Refunds take five days.".into(),
        link: None,
    }];
    let unknown = vec![Judged {
        id: "q".into(),
        text: "where is my refund".into(),
        relevant: vec!["b#0".into()],
    }];
    let err = tuning_queries(&corpus, &unknown).expect_err("b#0 is not in the corpus");
    assert!(
        matches!(err, AiError::TrainingData(ref m) if m.contains("b#0")),
        "{err:?}"
    );

    let embedded = vec![Embedding::from_stored(vec![0.0; 384]).expect("384 values")];
    for questions in [
        vec![],
        vec![TrainingQuery {
            text: "where is my refund".into(),
            relevant: vec![1],
        }],
    ] {
        let err = tune_queries(
            &base(),
            &embedded,
            &questions,
            &QueryTuneOptions::default(),
            &out.path().join("tuned"),
            |_, _| {},
        )
        .expect_err("nothing to learn from");
        assert!(matches!(err, AiError::TrainingData(_)), "{err:?}");
    }
    assert!(!out.path().join("tuned").exists(), "nothing is written");
}
