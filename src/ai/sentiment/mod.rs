//! Sentiment of a visitor message: VADER's lexicon scores fused with a small head over the
//! MiniLM embedding, giving a score in `[-1, 1]` and a negative / neutral / positive label, with
//! VADER's own compound score beside it; and [`SentimentTrend`], a conversation's sentiment over
//! its last messages.
//!
//! The head is an [`IntentHead`] trained on three labels (reviews from SST-2 and CR plus the
//! team's support utterances); the `fuse` step is fitted on examples the head did not see.
//! [`Sentiment::analyze`] scores with the fusion, which beats VADER and the head alone on the
//! product and support test sets and ties the head on film reviews (docs/ai-quality.md);
//! `eval sentiment` reports all three. Both are stored under `models/sentiment/` by
//! `switchboard train sentiment`.

mod eval;
mod fuse;
mod train;
mod trend;
mod vader;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::eval::{Confusion, EvalReport, MethodReport, evaluate};
pub use self::fuse::Fusion;
pub use self::train::{SentimentTrainOptions, SourceInfo, TrainSources, train};
pub use self::trend::SentimentTrend;
pub use self::vader::{VaderScores, vader};
use super::intent::IntentHead;
use super::{AiError, Embedding};

/// The three labels, in the order of every probability array here (and of the head's labels,
/// which are sorted by name).
pub const LABELS: [SentimentLabel; 3] = [
    SentimentLabel::Negative,
    SentimentLabel::Neutral,
    SentimentLabel::Positive,
];

/// Name of the embedding head's files (`head.safetensors`, `head.json`) in the model folder.
const HEAD_NAME: &str = "head";
/// Name of the sidecar with the fusion weights, sources and metrics.
const SIDECAR: &str = "sentiment.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Negative = 0,
    Neutral = 1,
    Positive = 2,
}

impl SentimentLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Negative => "negative",
            Self::Neutral => "neutral",
            Self::Positive => "positive",
        }
    }

    /// Reads a data set's label: `negative`, `neutral` or `positive` (any case).
    pub fn parse(label: &str) -> Option<Self> {
        LABELS
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(label.trim()))
    }
}

impl std::fmt::Display for SentimentLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sentiment of one text.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentimentScore {
    /// `p(positive) − p(negative)` of the head, in `[-1, 1]`.
    pub score: f32,
    /// The most probable label.
    pub label: SentimentLabel,
    /// The head's probabilities in [`LABELS`] order.
    pub probabilities: [f32; 3],
    /// VADER's compound score alone, for rules that want the lexicon's view.
    pub vader: f32,
}

impl SentimentScore {
    fn from_probabilities(probabilities: [f32; 3], vader: f32) -> Self {
        Self {
            score: (probabilities[2] - probabilities[0]).clamp(-1.0, 1.0),
            label: argmax(&probabilities),
            probabilities,
            vader,
        }
    }
}

fn argmax(p: &[f32; 3]) -> SentimentLabel {
    let mut best = 0;
    for i in 1..3 {
        if p[i] > p[best] {
            best = i;
        }
    }
    LABELS[best]
}

/// What `models/sentiment/sentiment.json` holds beside the fusion weights: enough to tell what
/// the model was trained on and how well it did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SentimentInfo {
    pub labels: Vec<SentimentLabel>,
    /// [`crate::ai::intent::data_hash`] over the head's and the fusion's examples, in order.
    pub data_hash: String,
    pub sources: Vec<SourceInfo>,
    pub options: SentimentTrainOptions,
    pub fusion: Fusion,
    /// Figures of VADER, the head and the fusion on the fusion's own examples, per source.
    pub validation: Vec<EvalReport>,
}

/// The trained model: the embedding head and the fusion with VADER.
pub struct Sentiment {
    head: IntentHead,
    info: SentimentInfo,
}

/// Every view of one text, for evaluation: VADER's, the head's and the fused one.
#[derive(Clone, Debug)]
pub(crate) struct Views {
    pub vader: VaderScores,
    pub head: [f32; 3],
    pub fused: [f32; 3],
}

impl Sentiment {
    /// Where the repository keeps the trained model, relative to its root.
    pub const DEFAULT_DIR: &str = "models/sentiment";

    /// Loads a model written by [`Self::save`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, AiError> {
        let dir = dir.as_ref();
        let path = dir.join(SIDECAR);
        let text = std::fs::read_to_string(&path).map_err(|source| AiError::ModelIo {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| AiError::InvalidModel {
            path: path.clone(),
            reason,
        };
        let info: SentimentInfo =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if !info.fusion.is_well_formed() || info.labels != LABELS {
            return Err(invalid("the labels or fusion weights are malformed".into()));
        }
        let head = IntentHead::load(dir, HEAD_NAME)?;
        let names: Vec<&str> = LABELS.iter().map(|l| l.as_str()).collect();
        if head.info().labels != names {
            return Err(invalid(format!(
                "the head's labels are {:?}, want {names:?}",
                head.info().labels
            )));
        }
        Ok(Self { head, info })
    }

    /// Writes `head.safetensors`, `head.json` and `sentiment.json` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), AiError> {
        let dir = dir.as_ref();
        self.head.save(dir, HEAD_NAME)?;
        let path = dir.join(SIDECAR);
        let json = serde_json::to_string_pretty(&self.info)
            .expect("the sidecar holds only strings, numbers and lists");
        std::fs::write(&path, json).map_err(|source| AiError::ModelIo { path, source })
    }

    pub fn info(&self) -> &SentimentInfo {
        &self.info
    }

    /// The sentiment of `text`, whose MiniLM embedding the caller has (it is shared with the
    /// intent head and retrieval).
    pub fn analyze(&self, text: &str, embedding: &Embedding) -> Result<SentimentScore, AiError> {
        let mut one = self.analyze_batch(&[text], &[embedding])?;
        Ok(one.pop().expect("analyze_batch returns one score per text"))
    }

    /// [`Self::analyze`] for several texts at once (one head forward pass).
    pub fn analyze_batch(
        &self,
        texts: &[&str],
        embeddings: &[&Embedding],
    ) -> Result<Vec<SentimentScore>, AiError> {
        Ok(self
            .views(texts, embeddings)?
            .into_iter()
            .map(|v| SentimentScore::from_probabilities(v.fused, v.vader.compound))
            .collect())
    }

    pub(crate) fn views(
        &self,
        texts: &[&str],
        embeddings: &[&Embedding],
    ) -> Result<Vec<Views>, AiError> {
        if texts.len() != embeddings.len() {
            return Err(AiError::InvalidInput(format!(
                "{} texts but {} embeddings",
                texts.len(),
                embeddings.len()
            )));
        }
        let heads = head_probabilities(&self.head, embeddings)?;
        Ok(texts
            .iter()
            .zip(heads)
            .map(|(text, head)| {
                let vader = vader(text);
                let fused = self.info.fusion.probabilities(&head, &vader);
                Views { vader, head, fused }
            })
            .collect())
    }
}

/// The head's three probabilities per embedding, in [`LABELS`] order.
fn head_probabilities(
    head: &IntentHead,
    embeddings: &[&Embedding],
) -> Result<Vec<[f32; 3]>, AiError> {
    Ok(head
        .probabilities(embeddings)?
        .into_iter()
        .map(|p| {
            <[f32; 3]>::try_from(p.as_slice())
                .expect("load and train accept only heads with the three labels")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_in_any_case_and_round_trip() {
        for label in LABELS {
            assert_eq!(SentimentLabel::parse(label.as_str()), Some(label));
            let upper = label.as_str().to_uppercase();
            assert_eq!(SentimentLabel::parse(&upper), Some(label));
        }
        assert_eq!(SentimentLabel::parse("meh"), None);
        assert!(
            LABELS.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
            "sorted by name"
        );
    }

    #[test]
    fn the_score_is_positive_minus_negative() {
        let s = SentimentScore::from_probabilities([0.1, 0.2, 0.7], 0.3);
        assert!((s.score - 0.6).abs() < 1e-6);
        assert_eq!(s.label, SentimentLabel::Positive);
        let n = SentimentScore::from_probabilities([0.3, 0.6, 0.1], -0.2);
        assert_eq!(n.label, SentimentLabel::Neutral);
        assert!((n.score + 0.2).abs() < 1e-6);
    }
}
