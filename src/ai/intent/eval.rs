//! Intent evaluation as the out-of-scope literature reports it: accuracy and macro-F1 over all
//! labels, in-scope accuracy, and out-of-scope recall and precision, at one threshold.

use serde::{Deserialize, Serialize};

use super::{IntentHead, OUT_OF_SCOPE, Score, nll};
use crate::ai::{AiError, Embedding};

/// Figures of a head on one labelled set; `oos_*` are `None` when the set has no
/// out-of-scope examples.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub examples: usize,
    /// Share of all examples whose prediction (intent or out of scope) is right.
    pub accuracy: f64,
    /// Mean F1 over the labels present in the set, out of scope counted as one label.
    pub macro_f1: f64,
    /// Share of in-scope examples given their right intent.
    pub in_scope_accuracy: f64,
    pub oos_recall: Option<f64>,
    pub oos_precision: Option<f64>,
    /// Expected calibration error of the top label's probability against whether that label
    /// is right, over ten equal-width confidence bins.
    #[serde(default)]
    pub ece: f64,
}

/// Bins of the expected calibration error.
const ECE_BINS: usize = 10;

/// `Σ |bin| / n · |accuracy(bin) − mean confidence(bin)|` over `(confidence, correct)` pairs.
pub fn expected_calibration_error(predictions: &[(f32, bool)]) -> f64 {
    let mut bins = [(0usize, 0.0f64, 0usize); ECE_BINS];
    for &(confidence, correct) in predictions {
        let b = ((confidence.clamp(0.0, 1.0) * ECE_BINS as f32) as usize).min(ECE_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += f64::from(confidence);
        bins[b].2 += usize::from(correct);
    }
    let n = predictions.len().max(1) as f64;
    bins.iter()
        .filter(|(count, _, _)| *count > 0)
        .map(|&(count, confidence, correct)| {
            let c = count as f64;
            c / n * (correct as f64 / c - confidence / c).abs()
        })
        .sum()
}

/// Temperatures tried by [`calibrate`].
const TEMPERATURES: std::ops::RangeInclusive<u32> = 10..=60;

/// Fits the softmax temperature (0.5 to 3.0 in steps of 0.05) that minimises the negative
/// log-likelihood of held-out examples whose labels the head knows, with the network's softmax
/// mixed with the neighbours' vote at the head's weight; sets it on `head` and returns it.
/// Without neighbours, temperature scaling changes confidences, never which label is best.
pub fn calibrate(head: &mut IntentHead, held_out: &[(Embedding, String)]) -> Result<f32, AiError> {
    let (parts, targets) = head.held_out_parts(held_out)?;
    let weight = head.info().neighbour_weight;
    let at = |t: f32| nll(&parts, &targets, t, weight);
    let best = TEMPERATURES
        .map(|step| step as f32 * 0.05)
        .min_by(|a, b| at(*a).total_cmp(&at(*b)))
        .unwrap_or(1.0);
    let temperature = if targets.is_empty() { 1.0 } else { best };
    head.set_temperature(temperature);
    Ok(temperature)
}

/// Scores `examples` (embedding, true label) with `head` at its threshold.
pub fn evaluate(head: &IntentHead, examples: &[(Embedding, String)]) -> Result<Metrics, AiError> {
    let scores = scores(head, examples)?;
    Ok(metrics_at(head, &scores, examples))
}

/// Picks the out-of-scope threshold on validation data (which must contain out-of-scope
/// examples), sets it on `head`, and returns the validation figures at it: the lowest
/// threshold whose out-of-scope recall reaches `min_oos_recall` (the lowest keeps the most
/// in-scope answers), or, when no threshold reaches it, the one with the best mean of
/// in-scope accuracy and out-of-scope recall.
pub fn choose_threshold(
    head: &mut IntentHead,
    validation: &[(Embedding, String)],
    min_oos_recall: f32,
) -> Result<Metrics, AiError> {
    let scores = scores(head, validation)?;
    let mut tried = Vec::with_capacity(200);
    for step in 0..200 {
        let threshold = step as f32 / 200.0;
        head.set_threshold(threshold, None);
        tried.push((threshold, metrics_at(head, &scores, validation)));
    }
    let reaching = tried
        .iter()
        .find(|(_, m)| m.oos_recall.unwrap_or(0.0) >= f64::from(min_oos_recall));
    let balanced = |m: &Metrics| (m.in_scope_accuracy + m.oos_recall.unwrap_or(0.0)) / 2.0;
    let (threshold, figures) = reaching
        .or_else(|| {
            tried
                .iter()
                .max_by(|a, b| balanced(&a.1).total_cmp(&balanced(&b.1)))
        })
        .cloned()
        .expect("the loop above tries 200 thresholds");
    head.set_threshold(threshold, Some(figures.clone()));
    Ok(figures)
}

impl Metrics {
    /// One line of the figures, in percent.
    pub fn render(&self) -> String {
        let pct = |x: f64| format!("{:.2}%", 100.0 * x);
        let opt = |x: Option<f64>| x.map_or("n/a".to_owned(), pct);
        format!(
            "{} examples: accuracy {}, macro-F1 {}, in-scope accuracy {}, OOS recall {}, OOS precision {}, ECE {:.4}",
            self.examples,
            pct(self.accuracy),
            pct(self.macro_f1),
            pct(self.in_scope_accuracy),
            opt(self.oos_recall),
            opt(self.oos_precision),
            self.ece
        )
    }
}

fn scores(head: &IntentHead, examples: &[(Embedding, String)]) -> Result<Vec<Score>, AiError> {
    let refs: Vec<&Embedding> = examples.iter().map(|(e, _)| e).collect();
    head.scores(&refs)
}

/// The figures for precomputed scores at the head's current threshold.
fn metrics_at(head: &IntentHead, scores: &[Score], examples: &[(Embedding, String)]) -> Metrics {
    let predicted: Vec<&str> = scores
        .iter()
        .map(|&score| head.accept(score).unwrap_or(OUT_OF_SCOPE))
        .collect();
    let truth: Vec<&str> = examples.iter().map(|(_, l)| l.as_str()).collect();
    let calibration: Vec<(f32, bool)> = scores
        .iter()
        .zip(&truth)
        .map(|(score, t)| (score.confidence, head.info().labels[score.best] == *t))
        .collect();
    Metrics {
        ece: expected_calibration_error(&calibration),
        ..metrics(&truth, &predicted)
    }
}

fn metrics(truth: &[&str], predicted: &[&str]) -> Metrics {
    let n = truth.len().max(1) as f64;
    let correct = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
    let in_scope: Vec<(&str, &str)> = truth
        .iter()
        .zip(predicted)
        .filter(|(t, _)| **t != OUT_OF_SCOPE)
        .map(|(t, p)| (*t, *p))
        .collect();
    let in_scope_correct = in_scope.iter().filter(|(t, p)| t == p).count();
    let is_oos = |l: &str| l == OUT_OF_SCOPE;
    let oos_true = truth.iter().filter(|t| is_oos(t)).count();
    let oos_pred = predicted.iter().filter(|p| is_oos(p)).count();
    let oos_hit = truth
        .iter()
        .zip(predicted)
        .filter(|(t, p)| is_oos(t) && is_oos(p))
        .count();
    let mut labels: Vec<&str> = truth.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let f1_sum: f64 = labels
        .iter()
        .map(|label| {
            let tp = truth
                .iter()
                .zip(predicted)
                .filter(|(t, p)| t == &label && p == &label);
            let tp = tp.count() as f64;
            let pred = predicted.iter().filter(|p| *p == label).count() as f64;
            let real = truth.iter().filter(|t| *t == label).count() as f64;
            if tp == 0.0 {
                0.0
            } else {
                2.0 * tp / (pred + real)
            }
        })
        .sum();
    Metrics {
        examples: truth.len(),
        accuracy: correct as f64 / n,
        macro_f1: f1_sum / labels.len().max(1) as f64,
        in_scope_accuracy: in_scope_correct as f64 / in_scope.len().max(1) as f64,
        oos_recall: (oos_true > 0).then(|| oos_hit as f64 / oos_true as f64),
        oos_precision: (oos_true > 0).then(|| oos_hit as f64 / oos_pred.max(1) as f64),
        ece: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_in_scope_and_out_of_scope_separately() {
        let truth = ["a", "a", "b", "oos", "oos"];
        let predicted = ["a", "oos", "b", "oos", "b"];
        let m = metrics(&truth, &predicted);
        assert_eq!(m.accuracy, 3.0 / 5.0);
        assert_eq!(m.in_scope_accuracy, 2.0 / 3.0);
        assert_eq!(m.oos_recall, Some(0.5));
        assert_eq!(m.oos_precision, Some(0.5));
        // F1: a = 2·1/(1+2), b = 2·1/(2+1), oos = 2·1/(2+2).
        let want = (2.0 / 3.0 + 2.0 / 3.0 + 0.5) / 3.0;
        assert!((m.macro_f1 - want).abs() < 1e-12);
        let no_oos = metrics(&["a", "b"], &["a", "a"]);
        let ece = expected_calibration_error(&[(0.95, true), (0.95, false), (0.25, false)]);
        assert!(
            (ece - (2.0 / 3.0 * 0.45 + 1.0 / 3.0 * 0.25)).abs() < 1e-6,
            "{ece}"
        );
        assert_eq!(no_oos.oos_recall, None);
    }
}
