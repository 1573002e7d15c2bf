//! Credentials: server-signed visitor tokens, and agent API tokens stored only as hashes.
//! Pure functions over bytes; the HTTP and WebSocket layers decide what to do with the result.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::domain::VisitorId;

type HmacSha256 = Hmac<Sha256>;

const VISITOR_TOKEN_PREFIX: &str = "v1.";
const API_TOKEN_PREFIX: &str = "sb_";

/// Why a credential was refused. Deliberately vague towards the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
}

/// Signs and checks visitor tokens, so a visitor can only ever name their own id.
#[derive(Clone)]
pub struct VisitorTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for VisitorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorTokens(..)")
    }
}

impl VisitorTokens {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(VISITOR_TOKEN_PREFIX.as_bytes());
        mac.update(payload.as_bytes());
        mac
    }

    pub fn issue(&self, visitor: VisitorId) -> String {
        let payload = URL_SAFE_NO_PAD.encode(visitor.as_uuid().as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{VISITOR_TOKEN_PREFIX}{payload}.{signature}")
    }

    pub fn verify(&self, token: &str) -> Result<VisitorId, AuthError> {
        let rest = token
            .strip_prefix(VISITOR_TOKEN_PREFIX)
            .ok_or(AuthError::Malformed)?;
        let (payload, signature) = rest.split_once('.').ok_or(AuthError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Malformed)?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        let uuid = uuid::Uuid::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
        uuid.to_string().parse().map_err(|_| AuthError::Malformed)
    }
}

/// A fresh random secret, hex encoded, for signing visitor tokens.
pub fn generate_secret() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// A new agent API token: shown once, stored only as [`hash_api_token`].
pub fn generate_api_token() -> String {
    format!(
        "{API_TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

/// API tokens are 256 random bits, so a plain SHA-256 is enough to store them: there is
/// nothing to brute-force that a slow hash would protect.
pub fn hash_api_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn visitor_token_round_trip() {
        let tokens = VisitorTokens::new(b"0123456789abcdef0123456789abcdef");
        let visitor = VisitorId::new();
        assert_eq!(tokens.verify(&tokens.issue(visitor)), Ok(visitor));
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let ours = VisitorTokens::new(b"0123456789abcdef0123456789abcdef");
        let theirs = VisitorTokens::new(b"ffffffffffffffffffffffffffffffff");
        assert_eq!(
            ours.verify(&theirs.issue(VisitorId::new())),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_token_naming_another_visitor_is_refused() {
        let tokens = VisitorTokens::new(b"0123456789abcdef0123456789abcdef");
        let mine = tokens.issue(VisitorId::new());
        let other = tokens.issue(VisitorId::new());
        let (_, my_sig) = mine.rsplit_once('.').expect("token has a signature");
        let (other_payload, _) = other.rsplit_once('.').expect("token has a payload");
        assert_eq!(
            tokens.verify(&format!("{other_payload}.{my_sig}")),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn api_tokens_are_random_and_hash_stably() {
        let a = generate_api_token();
        assert_ne!(a, generate_api_token());
        assert!(a.starts_with("sb_"));
        assert_eq!(hash_api_token(&a), hash_api_token(&a));
        assert_eq!(hash_api_token(&a).len(), 64);
    }

    proptest! {
        #[test]
        fn garbage_never_verifies(s in "\\PC{0,120}") {
            let tokens = VisitorTokens::new(b"0123456789abcdef0123456789abcdef");
            prop_assert!(tokens.verify(&s).is_err());
        }
    }
}
