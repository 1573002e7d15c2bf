//! What a visitor can say about the service: thumbs up or down on one bot answer, and a score
//! from 1 to 5 for a resolved conversation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a piece of feedback rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    /// One bot message.
    Answer,
    /// A whole conversation, once resolved (CSAT).
    Conversation,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Answer => "answer",
            FeedbackKind::Conversation => "conversation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "answer" => Some(FeedbackKind::Answer),
            "conversation" => Some(FeedbackKind::Conversation),
            _ => None,
        }
    }
}

/// A visitor's verdict on one bot answer. Stored as +1 (up) or -1 (down) in `feedback.rating`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnswerRating {
    Up,
    Down,
}

impl AnswerRating {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerRating::Up => "up",
            AnswerRating::Down => "down",
        }
    }

    pub fn stored(self) -> i64 {
        match self {
            AnswerRating::Up => 1,
            AnswerRating::Down => -1,
        }
    }

    pub fn from_stored(value: i64) -> Option<Self> {
        match value {
            1 => Some(AnswerRating::Up),
            -1 => Some(AnswerRating::Down),
            _ => None,
        }
    }
}

/// A conversation's satisfaction score: 1 (very unhappy) to 5 (very happy), nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct CsatScore(u8);

impl CsatScore {
    pub const LABELS: [&'static str; 5] = ["1", "2", "3", "4", "5"];

    pub fn get(self) -> u8 {
        self.0
    }

    /// The score as a metric label, from a fixed set of five.
    pub fn label(self) -> &'static str {
        Self::LABELS[usize::from(self.0 - 1)]
    }
}

impl TryFrom<i64> for CsatScore {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match u8::try_from(value) {
            Ok(v @ 1..=5) => Ok(Self(v)),
            _ => Err(format!("score must be an integer from 1 to 5, not {value}")),
        }
    }
}

impl From<CsatScore> for i64 {
    fn from(score: CsatScore) -> Self {
        i64::from(score.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_outside_one_to_five_do_not_parse() {
        for bad in [0, 6, -1, 256, i64::MAX] {
            assert!(CsatScore::try_from(bad).is_err(), "{bad}");
        }
        for good in 1..=5 {
            let score = CsatScore::try_from(good).expect("in range");
            assert_eq!(i64::from(score), good);
            assert_eq!(score.label(), good.to_string());
        }
        assert!(serde_json::from_str::<CsatScore>("3.5").is_err());
        assert!(serde_json::from_str::<CsatScore>("\"4\"").is_err());
    }

    #[test]
    fn answer_ratings_round_trip_through_storage() {
        for r in [AnswerRating::Up, AnswerRating::Down] {
            assert_eq!(AnswerRating::from_stored(r.stored()), Some(r));
        }
        assert_eq!(AnswerRating::from_stored(0), None);
        assert_eq!(
            serde_json::from_str::<AnswerRating>("\"down\"").ok(),
            Some(AnswerRating::Down)
        );
    }
}
