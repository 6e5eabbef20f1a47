//! Each platform's own signature scheme, verified on the raw body, compared in constant time
//! (`hmac`'s `verify_slice`, which uses `subtle`), with a timestamp tolerance where the scheme
//! signs a timestamp. Pure functions: the clock is a parameter.
//!
//! - Shopify: `X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body))`.
//! - Zendesk: `X-Zendesk-Webhook-Signature: base64(HMAC-SHA256(secret, timestamp + body))` with
//!   `X-Zendesk-Webhook-Signature-Timestamp` (RFC 3339) as `timestamp`.
//! - Typeform: `Typeform-Signature: sha256=` + `base64(HMAC-SHA256(secret, body))`.
//! - Kizuna's generic endpoint: `Authorization: Bearer <token>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The variant is a metric label; none carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {0} is not in the scheme's format")]
    Malformed(&'static str),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error(
        "the signed timestamp is {skew_secs} s away from now; the tolerance is {tolerance_secs} s"
    )]
    Stale { skew_secs: i64, tolerance_secs: u64 },
}

impl SignatureError {
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing(_) => "missing",
            SignatureError::Malformed(_) => "malformed",
            SignatureError::Mismatch => "mismatch",
            SignatureError::Stale { .. } => "stale",
        }
    }

    pub const REASONS: [&'static str; 4] = ["missing", "malformed", "mismatch", "stale"];
}

pub const SHOPIFY_HEADER: &str = "X-Shopify-Hmac-Sha256";
pub const ZENDESK_SIGNATURE_HEADER: &str = "X-Zendesk-Webhook-Signature";
pub const ZENDESK_TIMESTAMP_HEADER: &str = "X-Zendesk-Webhook-Signature-Timestamp";
pub const TYPEFORM_HEADER: &str = "Typeform-Signature";

fn mac(secret: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn verify(
    secret: &[u8],
    parts: &[&[u8]],
    header: &'static str,
    base64_sig: &str,
) -> Result<(), SignatureError> {
    let expected = BASE64
        .decode(base64_sig.trim())
        .map_err(|_| SignatureError::Malformed(header))?;
    let mut m = mac(secret);
    for part in parts {
        m.update(part);
    }
    m.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn sign(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut m = mac(secret);
    for part in parts {
        m.update(part);
    }
    BASE64.encode(m.finalize().into_bytes())
}

/// Verifies Shopify's `X-Shopify-Hmac-Sha256`.
pub fn verify_shopify(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let sig = header.ok_or(SignatureError::Missing(SHOPIFY_HEADER))?;
    verify(secret, &[body], SHOPIFY_HEADER, sig)
}

/// The value of `X-Shopify-Hmac-Sha256` for `body` (tests, the demo, the bench).
pub fn sign_shopify(secret: &[u8], body: &[u8]) -> String {
    sign(secret, &[body])
}

/// Verifies Zendesk's signature and that its timestamp is within `tolerance_secs` of `now`.
pub fn verify_zendesk(
    secret: &[u8],
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    now: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let sig = signature.ok_or(SignatureError::Missing(ZENDESK_SIGNATURE_HEADER))?;
    let ts = timestamp.ok_or(SignatureError::Missing(ZENDESK_TIMESTAMP_HEADER))?;
    // The signature first: a forged request learns nothing about the clock.
    verify(
        secret,
        &[ts.as_bytes(), body],
        ZENDESK_SIGNATURE_HEADER,
        sig,
    )?;
    let at = DateTime::parse_from_rfc3339(ts.trim())
        .map_err(|_| SignatureError::Malformed(ZENDESK_TIMESTAMP_HEADER))?
        .with_timezone(&Utc);
    let skew_secs = (now - at).num_seconds();
    if skew_secs.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// The value of `X-Zendesk-Webhook-Signature` for `timestamp` and `body`.
pub fn sign_zendesk(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    sign(secret, &[timestamp.as_bytes(), body])
}

/// Verifies Typeform's `Typeform-Signature: sha256=…`.
pub fn verify_typeform(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header.ok_or(SignatureError::Missing(TYPEFORM_HEADER))?;
    let sig = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed(TYPEFORM_HEADER))?;
    verify(secret, &[body], TYPEFORM_HEADER, sig)
}

/// The value of `Typeform-Signature` for `body`.
pub fn sign_typeform(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", sign(secret, &[body]))
}

/// Checks `Authorization: Bearer <token>` in constant time (over SHA-256 digests, so the
/// comparison does not even depend on the lengths).
pub fn verify_bearer(token: &[u8], authorization: Option<&str>) -> Result<(), SignatureError> {
    let value = authorization.ok_or(SignatureError::Missing("Authorization"))?;
    let (scheme, presented) = value
        .trim()
        .split_once(' ')
        .ok_or(SignatureError::Malformed("Authorization"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(SignatureError::Malformed("Authorization"));
    }
    let a = Sha256::digest(presented.trim().as_bytes());
    let b = Sha256::digest(token);
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("fixture time")
            .with_timezone(&Utc)
    }

    /// RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let sig = sign_shopify(b"Jefe", b"what do ya want for nothing?");
        let hex: String = BASE64
            .decode(sig)
            .expect("base64")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn shopify_accepts_its_own_signature_and_refuses_any_change() {
        let body = br#"{"id":1}"#;
        let sig = sign_shopify(b"secret", body);
        assert_eq!(verify_shopify(b"secret", body, Some(&sig)), Ok(()));
        assert_eq!(
            verify_shopify(b"secret", br#"{"id":2}"#, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shopify(b"other", body, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shopify(b"secret", body, None),
            Err(SignatureError::Missing(SHOPIFY_HEADER))
        );
        assert_eq!(
            verify_shopify(b"secret", body, Some("not base64!")),
            Err(SignatureError::Malformed(SHOPIFY_HEADER))
        );
        // A hex digest (a common mistake) is not Shopify's format.
        assert!(verify_shopify(b"secret", body, Some("deadbeef")).is_err());
    }

    #[test]
    fn zendesk_signs_timestamp_then_body_and_refuses_stale_timestamps() {
        let secret = b"dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";
        let ts = "2025-01-08T10:12:08Z";
        let body = br#"{"type":"zen:event-type:ticket.created"}"#;
        let sig = sign_zendesk(secret, ts, body);
        let now = at("2025-01-08T10:13:00Z");
        assert_eq!(
            verify_zendesk(secret, body, Some(&sig), Some(ts), now, 300),
            Ok(())
        );
        // The timestamp is part of what is signed.
        assert_eq!(
            verify_zendesk(
                secret,
                body,
                Some(&sig),
                Some("2025-01-08T10:12:09Z"),
                now,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        // Signed, but ten minutes old: a replay.
        let late = at("2025-01-08T10:22:09Z");
        assert!(matches!(
            verify_zendesk(secret, body, Some(&sig), Some(ts), late, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            verify_zendesk(secret, body, Some(&sig), None, now, 300),
            Err(SignatureError::Missing(ZENDESK_TIMESTAMP_HEADER))
        );
    }

    #[test]
    fn typeform_needs_the_sha256_prefix() {
        let body = br#"{"event_id":"LtWXD3crgy"}"#;
        let header = sign_typeform(b"abc123", body);
        assert!(header.starts_with("sha256="));
        assert_eq!(verify_typeform(b"abc123", body, Some(&header)), Ok(()));
        let bare = header.trim_start_matches("sha256=");
        assert_eq!(
            verify_typeform(b"abc123", body, Some(bare)),
            Err(SignatureError::Malformed(TYPEFORM_HEADER))
        );
        assert_eq!(
            verify_typeform(b"abc124", body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bearer_tokens_are_compared_whole() {
        assert_eq!(verify_bearer(b"t0k3n", Some("Bearer t0k3n")), Ok(()));
        assert_eq!(verify_bearer(b"t0k3n", Some("bearer t0k3n")), Ok(()));
        assert_eq!(
            verify_bearer(b"t0k3n", Some("Bearer t0k3")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_bearer(b"t0k3n", Some("Basic dXNlcjpwdw==")),
            Err(SignatureError::Malformed("Authorization"))
        );
        assert!(verify_bearer(b"t0k3n", None).is_err());
    }
}
