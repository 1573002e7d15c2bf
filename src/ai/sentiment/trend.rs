//! A conversation's sentiment over time, from the scores of its last visitor messages: what
//! escalation rules read as "getting angrier" or "calming down".

use std::collections::VecDeque;

/// The last `window` scores of one conversation, with an exponential moving average over all
/// of them. Pure and small: the caller keeps one per conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct SentimentTrend {
    window: usize,
    alpha: f32,
    recent: VecDeque<f32>,
    ema: Option<f32>,
}

impl SentimentTrend {
    /// Keeps the last `window` scores (at least 2, so a slope exists) and weighs each new score
    /// by `alpha` in the moving average (clamped to `(0, 1]`; 1 means "the last score only").
    pub fn new(window: usize, alpha: f32) -> Self {
        let alpha = if alpha.is_finite() {
            alpha.clamp(f32::EPSILON, 1.0)
        } else {
            1.0
        };
        Self {
            window: window.max(2),
            alpha,
            recent: VecDeque::new(),
            ema: None,
        }
    }

    /// Adds the score of the next visitor message (clamped to `[-1, 1]`; not-a-number counts as
    /// neutral).
    pub fn push(&mut self, score: f32) {
        let score = if score.is_nan() {
            0.0
        } else {
            score.clamp(-1.0, 1.0)
        };
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(score);
        self.ema = Some(match self.ema {
            Some(ema) => self.alpha * score + (1.0 - self.alpha) * ema,
            None => score,
        });
    }

    /// The exponential moving average of every score pushed, `None` before the first.
    pub fn ema(&self) -> Option<f32> {
        self.ema
    }

    /// The least-squares slope of the scores in the window, per message: negative when the
    /// visitor is getting more negative. `None` with fewer than two scores.
    pub fn slope(&self) -> Option<f32> {
        let n = self.recent.len();
        if n < 2 {
            return None;
        }
        let mean_x = (n - 1) as f32 / 2.0;
        let mean_y = self.recent.iter().sum::<f32>() / n as f32;
        let (mut cov, mut var) = (0.0, 0.0);
        for (i, y) in self.recent.iter().enumerate() {
            let dx = i as f32 - mean_x;
            cov += dx * (y - mean_y);
            var += dx * dx;
        }
        Some(cov / var)
    }

    /// How many scores the window holds now.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn empty_and_single_scores_have_no_slope() {
        let mut trend = SentimentTrend::new(5, 0.5);
        assert_eq!((trend.ema(), trend.slope()), (None, None));
        assert!(trend.is_empty());
        trend.push(0.4);
        assert_eq!(trend.ema(), Some(0.4));
        assert_eq!(trend.slope(), None);
    }

    #[test]
    fn ema_weighs_new_scores_by_alpha() {
        let mut trend = SentimentTrend::new(5, 0.5);
        for score in [0.0, 1.0, -1.0] {
            trend.push(score);
        }
        // 0 → 0.5·1 + 0.5·0 = 0.5 → 0.5·(−1) + 0.5·0.5 = −0.25
        assert!(close(trend.ema().expect("three scores"), -0.25));
    }

    #[test]
    fn slope_is_the_least_squares_line_over_the_window_only() {
        let mut trend = SentimentTrend::new(3, 1.0);
        for score in [0.9, 0.6, 0.3] {
            trend.push(score);
        }
        assert!(close(trend.slope().expect("three scores"), -0.3));
        // The window slides: only [0.6, 0.3, 0.9] remain: (−1·0 + 0 + 1·0.3) / 2.
        trend.push(0.9);
        assert_eq!(trend.len(), 3);
        assert!(close(trend.slope().expect("full window"), 0.15));
        assert_eq!(trend.ema(), Some(0.9));
    }

    #[test]
    fn out_of_range_inputs_are_clamped() {
        let mut trend = SentimentTrend::new(0, f32::NAN);
        trend.push(f32::NAN);
        trend.push(7.0);
        trend.push(-3.0);
        assert_eq!(trend.len(), 2, "the window is at least two");
        assert_eq!(trend.ema(), Some(-1.0), "alpha NaN means the last score");
        assert!(close(trend.slope().expect("two scores"), -2.0));
    }
}
