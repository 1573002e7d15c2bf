use serde::Serialize;

/// Why a piece of client text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text is empty")]
    Empty,
    #[error("text is {len} bytes; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("text contains a NUL character (U+0000)")]
    Nul,
    #[error("client_id must be 1 to {max} characters of A-Z a-z 0-9 - _ . :", max = ClientId::MAX_LEN)]
    BadClientId,
}

/// Chat text that is non-empty (after trimming), within the configured byte limit, and free of
/// NUL characters (which PostgreSQL cannot store in text, nor SQLite read back from JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(text: String, max_bytes: usize) -> Result<Self, TextError> {
        if text.trim().is_empty() {
            return Err(TextError::Empty);
        }
        if text.len() > max_bytes {
            return Err(TextError::TooLong {
                len: text.len(),
                max: max_bytes,
            });
        }
        if text.contains('\0') {
            return Err(TextError::Nul);
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The sender's own id for a message, which makes resends idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(id: String) -> Result<Self, TextError> {
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            Ok(Self(id))
        } else {
            Err(TextError::BadClientId)
        }
    }

    /// A server-made id for messages whose sender gave none.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_limits() {
        assert_eq!(MessageText::parse("  \n".into(), 10), Err(TextError::Empty));
        assert_eq!(
            MessageText::parse("x".repeat(11), 10),
            Err(TextError::TooLong { len: 11, max: 10 })
        );
        assert_eq!(MessageText::parse("a\0b".into(), 10), Err(TextError::Nul));
        assert_eq!(
            MessageText::parse("hello".into(), 10).map(|t| t.into_inner()),
            Ok("hello".into())
        );
    }

    #[test]
    fn client_id_rules() {
        assert!(ClientId::parse("abc-123_x.y:z".into()).is_ok());
        assert!(ClientId::parse(String::new()).is_err());
        assert!(ClientId::parse("has space".into()).is_err());
        assert!(ClientId::parse("x".repeat(65)).is_err());
        assert!(ClientId::parse(ClientId::generate().as_str().to_string()).is_ok());
    }

    proptest! {
        #[test]
        fn accepted_text_is_kept_verbatim(s in "\\PC{1,200}") {
            match MessageText::parse(s.clone(), 300) {
                Ok(t) => prop_assert_eq!(t.as_str(), s.as_str()),
                Err(TextError::Empty) => prop_assert!(s.trim().is_empty()),
                Err(e) => prop_assert!(s.len() > 300, "{e}"),
            }
        }
    }
}
