//! What the AI integration tests share.

use switchboard::ai::intent::LabelledText;

/// Labelled texts from `(label, text)` pairs.
pub fn rows(pairs: &[(&str, &str)]) -> Vec<LabelledText> {
    pairs
        .iter()
        .map(|(label, text)| LabelledText {
            text: (*text).into(),
            label: (*label).into(),
        })
        .collect()
}
