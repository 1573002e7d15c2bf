//! Evaluation of VADER alone, the embedding head alone and the fusion, on a `text,label` set
//! that is either three-class or binary.
//!
//! On a binary set (no `neutral` truth) every method is scored by the polarity it prefers:
//! the models by `p(negative)` against `p(positive)`, ignoring `p(neutral)`; VADER by the sign
//! of its compound score (0 counts as positive). On a three-class set each method's own label
//! is used (VADER's: compound ≥ 0.05 positive, ≤ −0.05 negative), and the polar accuracy (the
//! binary rule on the rows whose truth is not neutral) is reported beside it.

use serde::{Deserialize, Serialize};

use super::{LABELS, Sentiment, SentimentLabel, Views, argmax};
use crate::ai::intent::{LabelledText, embed_examples};
use crate::ai::{AiError, Embedder, Embedding};

/// Counts of (truth, prediction) pairs: `counts[t][p]`, indexes into `labels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub labels: Vec<SentimentLabel>,
    pub counts: Vec<Vec<usize>>,
}

/// The figures of one method on one set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodReport {
    pub accuracy: f64,
    /// Mean F1 over the labels present in the truth.
    pub macro_f1: f64,
    /// On a three-class set, the binary rule's accuracy on the rows that are not neutral.
    pub polar_accuracy: Option<f64>,
    pub confusion: Confusion,
}

/// VADER alone, the head alone and the fusion on one labelled set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub name: String,
    pub examples: usize,
    pub binary: bool,
    pub vader: MethodReport,
    pub head: MethodReport,
    pub fused: MethodReport,
}

/// Embeds and scores `rows` (labels `negative`, `neutral`, `positive`) with every method.
pub fn evaluate(
    model: &Sentiment,
    embedder: &Embedder,
    name: &str,
    rows: &[LabelledText],
) -> Result<EvalReport, AiError> {
    let truths = parse_labels(rows)?;
    let embedded = embed_examples(embedder, rows)?;
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    let embeddings: Vec<&Embedding> = embedded.iter().map(|(e, _)| e).collect();
    let views = model.views(&texts, &embeddings)?;
    Ok(report(name, &views, &truths))
}

/// The labels of `rows`, or an error naming the first unknown one.
pub(crate) fn parse_labels(rows: &[LabelledText]) -> Result<Vec<SentimentLabel>, AiError> {
    rows.iter()
        .map(|row| {
            SentimentLabel::parse(&row.label).ok_or_else(|| {
                AiError::TrainingData(format!(
                    "label `{}` is not negative, neutral or positive",
                    row.label
                ))
            })
        })
        .collect()
}

pub(crate) fn report(name: &str, views: &[Views], truths: &[SentimentLabel]) -> EvalReport {
    let binary = !truths.contains(&SentimentLabel::Neutral);
    let method = |label: &dyn Fn(&Views) -> SentimentLabel,
                  polarity: &dyn Fn(&Views) -> SentimentLabel| {
        let predicted: Vec<SentimentLabel> = views
            .iter()
            .map(|v| if binary { polarity(v) } else { label(v) })
            .collect();
        let polar: Vec<(SentimentLabel, SentimentLabel)> = views
            .iter()
            .zip(truths)
            .filter(|(_, t)| **t != SentimentLabel::Neutral)
            .map(|(v, t)| (*t, polarity(v)))
            .collect();
        let polar_accuracy = (!binary && !polar.is_empty())
            .then(|| polar.iter().filter(|(t, p)| t == p).count() as f64 / polar.len() as f64);
        method_report(truths, &predicted, binary, polar_accuracy)
    };
    EvalReport {
        name: name.to_owned(),
        examples: truths.len(),
        binary,
        vader: method(&|v| v.vader.label(), &|v| sign(v.vader.compound)),
        head: method(&|v| argmax(&v.head), &|v| prefer(&v.head)),
        fused: method(&|v| argmax(&v.fused), &|v| prefer(&v.fused)),
    }
}

fn sign(compound: f32) -> SentimentLabel {
    if compound < 0.0 {
        SentimentLabel::Negative
    } else {
        SentimentLabel::Positive
    }
}

/// The polarity a model prefers, neutral set aside.
fn prefer(p: &[f32; 3]) -> SentimentLabel {
    sign(p[SentimentLabel::Positive as usize] - p[SentimentLabel::Negative as usize])
}

fn method_report(
    truths: &[SentimentLabel],
    predicted: &[SentimentLabel],
    binary: bool,
    polar_accuracy: Option<f64>,
) -> MethodReport {
    let labels: Vec<SentimentLabel> = if binary {
        vec![SentimentLabel::Negative, SentimentLabel::Positive]
    } else {
        LABELS.to_vec()
    };
    let index = |l: &SentimentLabel| labels.iter().position(|x| x == l);
    let mut counts = vec![vec![0; labels.len()]; labels.len()];
    for (t, p) in truths.iter().zip(predicted) {
        if let (Some(t), Some(p)) = (index(t), index(p)) {
            counts[t][p] += 1;
        }
    }
    let correct: usize = (0..labels.len()).map(|i| counts[i][i]).sum();
    let present: Vec<usize> = (0..labels.len())
        .filter(|&i| counts[i].iter().sum::<usize>() > 0)
        .collect();
    let f1 = |i: usize| {
        let real: usize = counts[i].iter().sum();
        let pred: usize = counts.iter().map(|row| row[i]).sum();
        if counts[i][i] == 0 {
            0.0
        } else {
            2.0 * counts[i][i] as f64 / (real + pred) as f64
        }
    };
    MethodReport {
        accuracy: correct as f64 / truths.len().max(1) as f64,
        macro_f1: present.iter().map(|&i| f1(i)).sum::<f64>() / present.len().max(1) as f64,
        polar_accuracy,
        confusion: Confusion { labels, counts },
    }
}

impl EvalReport {
    /// A plain-text table of the three methods and their confusion matrices.
    pub fn render(&self) -> String {
        let kind = if self.binary { "binary" } else { "3-class" };
        let mut out = format!("{}: {} examples, {kind}\n", self.name, self.examples);
        out.push_str("method   accuracy  macro-F1  polar accuracy\n");
        let methods = [
            ("vader", &self.vader),
            ("head", &self.head),
            ("fused", &self.fused),
        ];
        for (name, m) in methods {
            let polar = m
                .polar_accuracy
                .map_or_else(|| "-".to_owned(), |a| format!("{:.2}%", 100.0 * a));
            out.push_str(&format!(
                "{name:<8} {:>7.2}%  {:>7.2}%  {polar:>14}\n",
                100.0 * m.accuracy,
                100.0 * m.macro_f1
            ));
        }
        for (name, m) in methods {
            out.push_str(&format!(
                "\n{name}: rows are the truth, columns the prediction\n"
            ));
            out.push_str(&format!("{:>10}", ""));
            for label in &m.confusion.labels {
                out.push_str(&format!("{:>10}", label.as_str()));
            }
            out.push('\n');
            for (label, row) in m.confusion.labels.iter().zip(&m.confusion.counts) {
                out.push_str(&format!("{:>10}", label.as_str()));
                for count in row {
                    out.push_str(&format!("{count:>10}"));
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::sentiment::VaderScores;
    use SentimentLabel::*;

    fn view(compound: f32, head: [f32; 3], fused: [f32; 3]) -> Views {
        Views {
            vader: VaderScores {
                compound,
                ..VaderScores::default()
            },
            head,
            fused,
        }
    }

    #[test]
    fn a_binary_set_sets_neutral_aside() {
        // The fusion says neutral but leans negative: on a binary set that is a negative.
        let views = [
            view(0.5, [0.6, 0.1, 0.3], [0.3, 0.6, 0.1]),
            view(0.0, [0.1, 0.1, 0.8], [0.1, 0.5, 0.4]),
        ];
        let r = report("t", &views, &[Negative, Positive]);
        assert!(r.binary);
        assert_eq!(r.fused.accuracy, 1.0);
        assert_eq!(r.vader.accuracy, 0.5, "compound 0 counts as positive");
        assert_eq!(r.head.confusion.counts, vec![vec![1, 0], vec![0, 1]]);
        assert_eq!(r.fused.polar_accuracy, None);
    }

    #[test]
    fn a_three_class_set_counts_the_confusion_and_the_polar_rows() {
        let views = [
            view(-0.6, [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]),
            view(0.02, [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]),
            view(0.7, [0.1, 0.6, 0.3], [0.1, 0.3, 0.6]),
        ];
        let r = report("t", &views, &[Negative, Neutral, Positive]);
        assert!(!r.binary);
        assert_eq!(r.fused.accuracy, 1.0);
        assert_eq!(r.vader.accuracy, 1.0);
        assert!((r.head.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.head.confusion.counts[2], vec![0, 1, 0]);
        assert_eq!(r.head.polar_accuracy, Some(1.0));
        // F1: negative 1, neutral 2/3, positive 0.
        assert!((r.head.macro_f1 - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        let text = r.render();
        assert!(text.contains("3 examples, 3-class"), "{text}");
        assert!(text.contains("66.67%"), "{text}");
    }

    #[test]
    fn unknown_labels_are_an_error() {
        let rows = [LabelledText {
            text: "hi".into(),
            label: "mixed".into(),
        }];
        let err = parse_labels(&rows).expect_err("mixed is no label");
        assert!(err.to_string().contains("mixed"), "{err}");
    }
}
