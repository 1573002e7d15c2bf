//! The fusion of the embedding head and VADER: a multinomial logistic regression over the head's
//! log-probabilities and VADER's four scores, fitted on examples the head did not train on (its
//! probabilities on its own training data are over-confident, and would teach the fusion to
//! ignore VADER). The inputs are standardised on the fitting examples first: the head's
//! log-probabilities spread over tens of units where VADER's scores stay within one, and
//! without it one gradient step size cannot suit both.

use serde::{Deserialize, Serialize};

use super::vader::VaderScores;
use super::{LABELS, SentimentLabel};

/// Inputs of the fusion: `ln p` of the head's three labels, VADER's compound, pos, neg and neu,
/// and a constant 1 for the bias.
const FEATURES: usize = 8;

/// Probabilities below this are clamped before the logarithm, so one confident head cannot
/// produce an unbounded feature.
const MIN_PROBABILITY: f32 = 1e-6;

/// What one fitting example says about the truth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// One of the three labels, from a three-class set.
    Label(SentimentLabel),
    /// A binary set's label: which polarity, saying nothing about neutrality, so only the
    /// negative-versus-positive odds are fitted to it.
    Polarity(SentimentLabel),
}

/// One example for [`Fusion::fit`]: the head's probabilities, VADER's scores, the truth, and a
/// weight (so that each data source counts as much as the others whatever its size).
#[derive(Clone, Debug)]
pub struct FitExample {
    pub head: [f32; 3],
    pub vader: VaderScores,
    pub target: Target,
    pub weight: f64,
}

/// The fitted weights: one row of `FEATURES` per label, in [`LABELS`] order, over the
/// inputs standardised by `mean` and `scale` (one each per input but the bias).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    pub weights: Vec<Vec<f32>>,
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
}

/// The smallest spread an input is divided by, for an input that hardly varies.
const MIN_SCALE: f64 = 1e-3;

fn features(head: &[f32; 3], vader: &VaderScores) -> [f32; FEATURES] {
    let ln = |p: f32| p.max(MIN_PROBABILITY).ln();
    [
        ln(head[0]),
        ln(head[1]),
        ln(head[2]),
        vader.compound,
        vader.pos,
        vader.neg,
        vader.neu,
        1.0,
    ]
}

/// The inputs less their mean, over their spread; the bias stays 1.
fn standardise<T: Copy + Into<f64>>(
    x: &[f64; FEATURES],
    mean: &[T],
    scale: &[T],
) -> [f64; FEATURES] {
    let mut z = [1.0; FEATURES];
    for (i, zi) in z.iter_mut().take(FEATURES - 1).enumerate() {
        *zi = (x[i] - mean[i].into()) / scale[i].into();
    }
    z
}

fn softmax(logits: [f64; 3]) -> [f64; 3] {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp = logits.map(|z| (z - max).exp());
    let sum: f64 = exp.iter().sum();
    exp.map(|e| e / sum)
}

impl Fusion {
    /// Full-batch gradient descent on the weighted cross-entropy over standardised inputs,
    /// starting from "trust the head" (the logits are its log-probabilities, nothing from
    /// VADER) and held near it by a small L2 penalty on the distance, so that what little data
    /// there is moves it only where it has evidence. Deterministic.
    pub fn fit(examples: &[FitExample]) -> Self {
        const STEPS: usize = 3000;
        const LEARNING_RATE: f64 = 0.5;
        const L2: f64 = 1e-4;
        let total: f64 = examples
            .iter()
            .map(|e| e.weight)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let raw: Vec<[f64; FEATURES]> = examples
            .iter()
            .map(|e| features(&e.head, &e.vader).map(f64::from))
            .collect();
        let mut mean = [0.0f64; FEATURES - 1];
        let mut scale = [0.0f64; FEATURES - 1];
        for (e, x) in examples.iter().zip(&raw) {
            for (m, xi) in mean.iter_mut().zip(x) {
                *m += e.weight * xi / total;
            }
        }
        for (e, x) in examples.iter().zip(&raw) {
            for ((s, m), xi) in scale.iter_mut().zip(&mean).zip(x) {
                *s += e.weight * (xi - m).powi(2) / total;
            }
        }
        let scale = scale.map(|v| v.sqrt().max(MIN_SCALE));
        let rows: Vec<[f64; FEATURES]> =
            raw.iter().map(|x| standardise(x, &mean, &scale)).collect();
        let mut prior = [[0.0f64; FEATURES]; 3];
        for (k, row) in prior.iter_mut().enumerate() {
            row[k] = scale[k];
            row[FEATURES - 1] = mean[k];
        }
        let mut w = prior;
        for _ in 0..STEPS {
            let mut grad = [[0.0f64; FEATURES]; 3];
            for (example, x) in examples.iter().zip(&rows) {
                let logits = w.map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>());
                let dz = logit_gradient(logits, example.target);
                for (g_row, dz_k) in grad.iter_mut().zip(dz) {
                    for (g, xi) in g_row.iter_mut().zip(x) {
                        *g += example.weight * dz_k * xi / total;
                    }
                }
            }
            for ((w_row, g_row), p_row) in w.iter_mut().zip(&grad).zip(&prior) {
                for ((wi, gi), pi) in w_row.iter_mut().zip(g_row).zip(p_row) {
                    *wi -= LEARNING_RATE * (gi + L2 * (*wi - pi));
                }
            }
        }
        Self {
            weights: w
                .iter()
                .map(|row| row.iter().map(|&x| x as f32).collect())
                .collect(),
            mean: mean.iter().map(|&x| x as f32).collect(),
            scale: scale.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Whether the weights have the shape [`Self::probabilities`] needs.
    pub fn is_well_formed(&self) -> bool {
        let finite = |v: &[f32]| v.iter().all(|w| w.is_finite());
        self.weights.len() == LABELS.len()
            && self
                .weights
                .iter()
                .all(|row| row.len() == FEATURES && finite(row))
            && self.mean.len() == FEATURES - 1
            && finite(&self.mean)
            && self.scale.len() == FEATURES - 1
            && self.scale.iter().all(|s| s.is_finite() && *s > 0.0)
    }

    /// The fused probabilities of the three labels, in [`LABELS`] order.
    pub fn probabilities(&self, head: &[f32; 3], vader: &VaderScores) -> [f32; 3] {
        let raw = features(head, vader).map(f64::from);
        let x = standardise(&raw, &self.mean, &self.scale);
        let mut logits = [0.0f64; 3];
        for (z, row) in logits.iter_mut().zip(&self.weights) {
            *z = row.iter().zip(&x).map(|(a, b)| f64::from(*a) * b).sum();
        }
        softmax(logits).map(|p| p as f32)
    }
}

/// d(loss)/d(logits) for one example: softmax minus one-hot over all three labels, or over
/// negative and positive only for a polarity target (neutral's logit then gets no gradient).
fn logit_gradient(logits: [f64; 3], target: Target) -> [f64; 3] {
    let index = |label: SentimentLabel| label as usize;
    match target {
        Target::Label(label) => {
            let mut p = softmax(logits);
            p[index(label)] -= 1.0;
            p
        }
        Target::Polarity(label) => {
            let (neg, pos) = (
                index(SentimentLabel::Negative),
                index(SentimentLabel::Positive),
            );
            let two = softmax([logits[neg], logits[pos], f64::NEG_INFINITY]);
            let mut dz = [0.0; 3];
            dz[neg] = two[0] - f64::from(u8::from(label == SentimentLabel::Negative));
            dz[pos] = two[1] - f64::from(u8::from(label == SentimentLabel::Positive));
            dz
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(head: [f32; 3], compound: f32, target: Target) -> FitExample {
        FitExample {
            head,
            vader: VaderScores {
                compound,
                ..VaderScores::default()
            },
            target,
            weight: 1.0,
        }
    }

    #[test]
    fn learns_to_trust_vader_where_the_head_is_uninformative() {
        use SentimentLabel::*;
        let flat = [1.0 / 3.0; 3];
        let examples: Vec<FitExample> = (0..60)
            .map(|i| {
                let compound = (i as f32 - 30.0) / 30.0;
                let label = if compound > 0.0 { Positive } else { Negative };
                example(flat, compound, Target::Polarity(label))
            })
            .collect();
        let fusion = Fusion::fit(&examples);
        assert!(fusion.is_well_formed());
        let strong = |compound| VaderScores {
            compound,
            ..VaderScores::default()
        };
        let p = fusion.probabilities(&flat, &strong(0.9));
        let n = fusion.probabilities(&flat, &strong(-0.9));
        assert!(p[Positive as usize] > p[Negative as usize] + 0.3, "{p:?}");
        assert!(n[Negative as usize] > n[Positive as usize] + 0.3, "{n:?}");
    }

    #[test]
    fn starts_from_the_head_and_keeps_probabilities_normalised() {
        let fusion = Fusion::fit(&[]);
        let head = [0.7, 0.2, 0.1];
        let p = fusion.probabilities(&head, &VaderScores::default());
        for (a, b) in p.iter().zip(head) {
            assert!((a - b).abs() < 1e-5, "{p:?}");
        }
        assert!(fusion.is_well_formed());
        let two_rows = Fusion {
            weights: vec![vec![0.0; FEATURES]; 2],
            ..fusion.clone()
        };
        assert!(!two_rows.is_well_formed());
        let no_spread = Fusion {
            scale: vec![0.0; FEATURES - 1],
            ..fusion
        };
        assert!(!no_spread.is_well_formed());
    }

    #[test]
    fn a_polarity_target_leaves_neutral_alone() {
        let dz = logit_gradient([0.0, 5.0, 0.0], Target::Polarity(SentimentLabel::Negative));
        assert_eq!(dz[1], 0.0);
        assert!(
            (dz[0] + 0.5).abs() < 1e-12 && (dz[2] - 0.5).abs() < 1e-12,
            "{dz:?}"
        );
    }
}
