//! Bearer tokens for admin, issuer and operator calls. Services store only the SHA-256 of a
//! token and compare digests in constant time, so neither a database dump nor response
//! timing gives a token away.

use axum::http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freshly generated bearer token (32 random bytes, hex).
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn generate() -> Token {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Token(hex::encode(b))
    }

    pub fn from_string(s: String) -> Token {
        Token(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What services store.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.0)
    }
}

/// SHA-256 of a presented token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Does `presented` hash to `stored`? Constant time in the digest comparison.
pub fn matches(presented: &str, stored: &[u8]) -> bool {
    stored.len() == 32 && bool::from(digest(presented).ct_eq(stored))
}

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A credential of the form `<id>:<secret>` given to issuers and operators, so a service can
/// find the stored digest by id and then compare in constant time.
pub fn split_credential(token: &str) -> Option<(&str, &str)> {
    token
        .split_once(':')
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_digest_matches_only_its_token() {
        let t = Token::generate();
        let d = t.digest();
        assert!(matches(t.as_str(), &d));
        assert!(!matches("nope", &d));
        assert!(!matches(t.as_str(), &d[..31]));
        assert!(!format!("{t:?}").contains(t.as_str()));
    }
}
