//! Training: the head on review sentences (SST-2, CR) and the team's support utterances, then
//! the fusion with VADER on rows the head did not see (SST-2's validation split and one row in
//! [`SentimentTrainOptions::holdout_every`] of the others). No test split is ever read here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{parse_labels, report};
use super::fuse::{FitExample, Fusion, Target};
use super::{LABELS, Sentiment, SentimentInfo, SentimentLabel, Views, vader};
use crate::ai::intent::{
    IntentHead, LabelledText, TrainOptions, data_hash, embed_examples, read_labelled_csv,
};
use crate::ai::{AiError, Embedder, Embedding};

/// Where the training data is; a `None` source is left out.
#[derive(Clone, Debug)]
pub struct TrainSources {
    /// SST-2's folder: `train.csv` trains the head, `val.csv` the fusion.
    pub sst2: Option<PathBuf>,
    /// CR's folder: its `train.csv` is split between the head and the fusion.
    pub cr: Option<PathBuf>,
    /// The support utterances (`datasets/sentiment/support_train.csv`), split the same way.
    pub support: Option<PathBuf>,
}

impl Default for TrainSources {
    /// The datasets beside the repository (`../shared/datasets/`) and the team's file in it.
    fn default() -> Self {
        Self {
            sst2: Some("../shared/datasets/sst2".into()),
            cr: Some("../shared/datasets/cr_customer_reviews".into()),
            support: Some("datasets/sentiment/support_train.csv".into()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SentimentTrainOptions {
    pub head: TrainOptions,
    /// How many times each support row is repeated in the head's data: a few hundred support
    /// rows would otherwise be drowned by ten thousand review sentences.
    pub support_repeat: usize,
    /// One row in this many of CR's and the support file's is held out for the fusion.
    pub holdout_every: usize,
}

impl Default for SentimentTrainOptions {
    /// Chosen on the fusion's held-out rows (docs/ai-quality.md).
    fn default() -> Self {
        Self {
            head: TrainOptions {
                hidden: 256,
                epochs: 6,
                ..TrainOptions::default()
            },
            support_repeat: 4,
            holdout_every: 4,
        }
    }
}

/// One data source as the sidecar records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceInfo {
    pub name: String,
    pub files: Vec<String>,
    pub head_rows: usize,
    pub fusion_rows: usize,
}

/// One source's rows, split and embedded.
struct Source {
    info: SourceInfo,
    /// The head's rows with canonical labels, for the data hash.
    head_rows: Vec<LabelledText>,
    head: Vec<(Embedding, String)>,
    fusion: Vec<(LabelledText, Embedding, SentimentLabel)>,
    three_class: bool,
    repeat: usize,
}

/// Trains the head and the fusion from `sources`; the result is ready to [`Sentiment::save`].
pub fn train(
    embedder: &Embedder,
    sources: &TrainSources,
    options: SentimentTrainOptions,
) -> Result<Sentiment, AiError> {
    let every = options.holdout_every.max(2);
    let mut loaded = Vec::new();
    if let Some(dir) = &sources.sst2 {
        let (train, val) = (dir.join("train.csv"), dir.join("val.csv"));
        let (head, fusion) = (read(&train)?, read(&val)?);
        loaded.push(source(embedder, "sst2", &[&train, &val], head, fusion, 1)?);
    }
    if let Some(dir) = &sources.cr {
        let train = dir.join("train.csv");
        let (head, fusion) = split(read(&train)?, every);
        loaded.push(source(embedder, "cr", &[&train], head, fusion, 1)?);
    }
    if let Some(file) = &sources.support {
        let (head, fusion) = split(read(file)?, every);
        let repeat = options.support_repeat.max(1);
        loaded.push(source(embedder, "support", &[file], head, fusion, repeat)?);
    }

    let mut head_examples = Vec::new();
    for s in &loaded {
        for _ in 0..s.repeat {
            head_examples.extend(s.head.iter().cloned());
        }
    }
    let present = |label: SentimentLabel| head_examples.iter().any(|(_, l)| l == label.as_str());
    if !LABELS.into_iter().all(present) {
        return Err(AiError::TrainingData(
            "the head needs examples of negative, neutral and positive \
             (neutral ones come from the support file)"
                .into(),
        ));
    }
    let all_rows: Vec<LabelledText> = loaded
        .iter()
        .flat_map(|s| {
            let fusion = s.fusion.iter().map(|(row, _, _)| row.clone());
            s.head_rows.iter().cloned().chain(fusion)
        })
        .collect();
    let hash = data_hash(&all_rows);
    let head = IntentHead::train(&head_examples, hash.clone(), options.head.clone())?;

    let mut fit = Vec::new();
    let mut validation = Vec::new();
    for s in &loaded {
        let texts: Vec<&str> = s.fusion.iter().map(|(r, _, _)| r.text.as_str()).collect();
        let embeddings: Vec<&Embedding> = s.fusion.iter().map(|(_, e, _)| e).collect();
        let probabilities = super::head_probabilities(&head, &embeddings)?;
        let weight = 1.0 / s.fusion.len().max(1) as f64;
        let mut views = Vec::with_capacity(texts.len());
        for ((text, p), (_, _, truth)) in texts.iter().zip(probabilities).zip(&s.fusion) {
            let scores = vader(text);
            let target = if s.three_class {
                Target::Label(*truth)
            } else {
                Target::Polarity(*truth)
            };
            fit.push(FitExample {
                head: p,
                vader: scores,
                target,
                weight,
            });
            views.push(Views {
                vader: scores,
                head: p,
                fused: p,
            });
        }
        validation.push((s.info.name.clone(), views));
    }
    let fusion = Fusion::fit(&fit);
    let validation = loaded
        .iter()
        .zip(validation)
        .map(|(s, (name, mut views))| {
            for v in &mut views {
                v.fused = fusion.probabilities(&v.head, &v.vader);
            }
            let truths: Vec<SentimentLabel> = s.fusion.iter().map(|(_, _, t)| *t).collect();
            report(&name, &views, &truths)
        })
        .collect();
    Ok(Sentiment {
        head,
        info: SentimentInfo {
            labels: LABELS.to_vec(),
            data_hash: hash,
            sources: loaded.into_iter().map(|s| s.info).collect(),
            options,
            fusion,
            validation,
        },
    })
}

fn read(path: &Path) -> Result<Vec<LabelledText>, AiError> {
    let rows = read_labelled_csv(path)?;
    Ok(rows.into_iter().filter(|r| !r.text.is_empty()).collect())
}

/// Row `i` goes to the fusion when `i % every == 0`, to the head otherwise.
fn split(rows: Vec<LabelledText>, every: usize) -> (Vec<LabelledText>, Vec<LabelledText>) {
    let (mut head, mut fusion) = (Vec::new(), Vec::new());
    for (i, row) in rows.into_iter().enumerate() {
        if i % every == 0 {
            fusion.push(row);
        } else {
            head.push(row);
        }
    }
    (head, fusion)
}

fn source(
    embedder: &Embedder,
    name: &str,
    files: &[&Path],
    head: Vec<LabelledText>,
    fusion: Vec<LabelledText>,
    repeat: usize,
) -> Result<Source, AiError> {
    let head_truths = parse_labels(&head)?;
    let fusion_truths = parse_labels(&fusion)?;
    let three_class = head_truths
        .iter()
        .chain(&fusion_truths)
        .any(|l| *l == SentimentLabel::Neutral);
    let canonical: Vec<LabelledText> = head
        .iter()
        .zip(&head_truths)
        .map(|(row, label)| LabelledText {
            text: row.text.clone(),
            label: label.as_str().to_owned(),
        })
        .collect();
    let head_embedded = embed_examples(embedder, &canonical)?;
    let fusion_embedded = embed_examples(embedder, &fusion)?;
    Ok(Source {
        info: SourceInfo {
            name: name.to_owned(),
            files: files.iter().map(|f| f.display().to_string()).collect(),
            head_rows: head.len(),
            fusion_rows: fusion.len(),
        },
        head_rows: canonical,
        head: head_embedded,
        fusion: fusion
            .into_iter()
            .zip(fusion_embedded)
            .zip(fusion_truths)
            .map(|((row, (e, _)), t)| (row, e, t))
            .collect(),
        three_class,
        repeat,
    })
}
