//! VADER (Hutto & Gilbert, ICWSM 2014), the rule-based lexicon scorer, through the
//! `vader_sentiment` crate (a Rust port of the authors' Python package, MIT, with its lexicon).

use std::sync::LazyLock;

use vader_sentiment::SentimentIntensityAnalyzer;

use super::SentimentLabel;

/// VADER's four figures for one text.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VaderScores {
    /// The normalised sum of the valences, in `[-1, 1]`.
    pub compound: f32,
    /// Shares of the text that read positive, negative and neutral; they sum to 1 (or are all 0
    /// for a text without words).
    pub pos: f32,
    pub neg: f32,
    pub neu: f32,
}

/// The compound score beyond which VADER's authors call a text positive (or, negated, negative).
const NEUTRAL_BAND: f32 = 0.05;

static ANALYZER: LazyLock<SentimentIntensityAnalyzer<'static>> =
    LazyLock::new(SentimentIntensityAnalyzer::new);

/// Scores `text` with VADER.
pub fn vader(text: &str) -> VaderScores {
    let scores = ANALYZER.polarity_scores(text);
    let get = |key: &str| scores.get(key).copied().unwrap_or_default() as f32;
    VaderScores {
        compound: get("compound"),
        pos: get("pos"),
        neg: get("neg"),
        neu: get("neu"),
    }
}

impl VaderScores {
    /// VADER's own three-way rule: positive at compound ≥ 0.05, negative at ≤ −0.05.
    pub fn label(&self) -> SentimentLabel {
        if self.compound >= NEUTRAL_BAND {
            SentimentLabel::Positive
        } else if self.compound <= -NEUTRAL_BAND {
            SentimentLabel::Negative
        } else {
            SentimentLabel::Neutral
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_lexicon_negation_and_emphasis() {
        let good = vader("The driver was great");
        let not_good = vader("The driver was not great");
        let shouted = vader("The driver was great!!!");
        assert!(good.compound > 0.5, "{good:?}");
        assert!(not_good.compound < 0.0, "{not_good:?}");
        assert!(shouted.compound > good.compound);
        assert_eq!(
            vader("I was charged twice, terrible").label(),
            SentimentLabel::Negative
        );
        assert_eq!(
            vader("Where is the pickup point").label(),
            SentimentLabel::Neutral
        );
        let sum = good.pos + good.neg + good.neu;
        assert!((sum - 1.0).abs() < 1e-3, "{sum}");
    }

    #[test]
    fn empty_and_odd_input_scores_zero_without_panicking() {
        assert_eq!(vader(""), VaderScores::default());
        for text in [
            "!!!",
            "a",
            "😡😡",
            "kind of",
            "at least",
            "\u{0}",
            "but but but",
        ] {
            let s = vader(text);
            assert!((-1.0..=1.0).contains(&s.compound), "{text}: {s:?}");
        }
    }
}
