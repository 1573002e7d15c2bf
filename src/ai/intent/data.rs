//! Labelled examples: `text,label` CSV files, as the datasets and `switchboard train` use.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ai::AiError;

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
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    fn a_file_without_a_label_column_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data.csv");
        std::fs::write(&path, "text,intent\nhi,hello\n").expect("writes");
        let err = read_labelled_csv(&path).expect_err("no label column");
        assert!(err.to_string().contains("label"), "{err}");
    }
}
