//! Standard Webhooks signatures (standardwebhooks.com, "Signature scheme"): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the base64-decoded secret, sent as
//! `v1,<base64>`; several signatures (current and previous secret during a rotation) are
//! separated by spaces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The prefix of a symmetric secret as Standard Webhooks serialises it.
pub const SECRET_PREFIX: &str = "whsec_";

/// Secrets of at least 24 and at most 64 bytes (the spec: "at least 24 bytes … 512 maximum"
/// bits for the key material).
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

/// A subscription's signing secret: `whsec_` and base64 of its bytes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a secret starts with \"whsec_\" followed by base64")]
    Format,
    #[error("a secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, got {0}")]
    Length(usize),
}

impl Secret {
    /// 32 random bytes from the operating system's generator (through rand's thread RNG,
    /// a CSPRNG seeded from it).
    pub fn generate() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Format)?;
        let key = STANDARD
            .decode(encoded.trim())
            .map_err(|_| SecretError::Format)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// The serialised form, `whsec_<base64>`: for storage and for the subscriber.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            unreachable!("HMAC accepts keys of any length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one signature per secret, space separated.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with the reference library (PyPI standardwebhooks 1.1.0):
    /// `Webhook(secret).sign(id, datetime.fromtimestamp(1764000000, utc), body)`.
    #[test]
    fn signs_as_the_reference_library_does() {
        let secret = Secret::parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("valid secret");
        let sig = secret.sign(
            "0b9d3f2e-0000-4000-8000-000000000001",
            1_764_000_000,
            br#"{"specversion":"1.0"}"#,
        );
        assert_eq!(sig, "v1,NmKbmCbolwcfO6/HEpF6nnNM3u5IIhplIbynYIHcOZU=");
    }

    #[test]
    fn a_generated_secret_round_trips_and_never_prints() {
        let s = Secret::generate();
        let text = s.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text), Ok(s.clone()));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn short_or_malformed_secrets_are_refused() {
        assert_eq!(Secret::parse("abc"), Err(SecretError::Format));
        assert_eq!(Secret::parse("whsec_!!!"), Err(SecretError::Format));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SecretError::Length(3)));
    }

    #[test]
    fn a_rotation_sends_both_signatures() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[a.clone(), b.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts, [a.sign("id", 1, b"{}"), b.sign("id", 1, b"{}")]);
    }
}
