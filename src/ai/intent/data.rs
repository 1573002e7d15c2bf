//! Labelled examples: `text,label` CSV files, as the datasets and `switchboard train` use.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ai::{AiError, hex};

/// One example utterance and its intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledText {
    pub text: String,
    pub label: String,
}

/// Reads a CSV file with a `text,label` header.
pub fn read_labelled_csv(path: &Path) -> Result<Vec<LabelledText>, AiError> {
    let bad = |reason: String| AiError::TrainingData(format!("{}: {reason}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no `{name}` column")))
    };
    let (text, label) = (column("text")?, column("label")?);
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let field = |i: usize| record.get(i).unwrap_or_default().trim().to_owned();
            Ok(LabelledText {
                text: field(text),
                label: field(label),
            })
        })
        .collect()
}

/// SHA-256 over the examples in order: a head trained on data with this hash needs no
/// retraining.
pub fn data_hash(examples: &[LabelledText]) -> String {
    let mut hasher = Sha256::new();
    for example in examples {
        hasher.update(example.text.as_bytes());
        hasher.update([0x1f]);
        hasher.update(example.label.as_bytes());
        hasher.update([0x1e]);
    }
    hex(&hasher.finalize())
}

/// Items with their labels.
pub type Labelled<T> = Vec<(T, String)>;

/// Splits labelled items four to one for calibration: every fifth item of each label is held
/// out, so the split is the same whatever order the labels come in. Returns (fit, held out).
pub fn every_fifth_of_each_label<T: Clone>(items: &[(T, String)]) -> (Labelled<T>, Labelled<T>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut fit = Vec::with_capacity(items.len());
    let mut held = Vec::with_capacity(items.len() / 5 + 1);
    for item in items {
        let count = seen.entry(item.1.as_str()).or_default();
        *count += 1;
        if count.is_multiple_of(5) {
            held.push(item.clone());
        } else {
            fit.push(item.clone());
        }
    }
    (fit, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_fields_and_hashes_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data.csv");
        let text = "label,text\nrefund,\"I want my money back, now\"\nhello,hi there\n";
        std::fs::write(&path, text).expect("writes");
        let rows = read_labelled_csv(&path).expect("reads");
        assert_eq!(rows[0].text, "I want my money back, now");
        assert_eq!(rows[0].label, "refund");
        assert_eq!(rows.len(), 2);
        let mut changed = rows.clone();
        changed[1].label = "greeting".into();
        assert_ne!(data_hash(&rows), data_hash(&changed));
        assert_eq!(data_hash(&rows), data_hash(&rows.clone()));
    }

    #[test]
    fn every_fifth_example_of_each_label_is_held_out_in_any_order() {
        let labelled = |label: &str, n: usize| -> Vec<(usize, String)> {
            (1..=n).map(|i| (i, label.to_owned())).collect()
        };
        let a_then_b = [labelled("a", 12), labelled("b", 7)].concat();
        let b_then_a = [labelled("b", 7), labelled("a", 12)].concat();
        let (fit, held) = every_fifth_of_each_label(&a_then_b);
        assert_eq!(
            held,
            vec![(5, "a".into()), (10, "a".into()), (5, "b".into())]
        );
        assert_eq!(fit.len() + held.len(), 19);
        let (_, other) = every_fifth_of_each_label(&b_then_a);
        let mut other = other;
        other.sort_by(|x, y| x.1.cmp(&y.1).then(x.0.cmp(&y.0)));
        assert_eq!(other, held);
    }

    #[test]
    fn a_file_without_a_label_column_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data.csv");
        std::fs::write(&path, "text,intent\nhi,hello\n").expect("writes");
        let err = read_labelled_csv(&path).expect_err("no label column");
        assert!(err.to_string().contains("label"), "{err}");
    }
}
