//! Who may call the HTTP API: roles, bearer tokens stored as hashes, JWTs checked against an
//! identity provider's JWKS, and the limits every request meets (body size, time, the admin
//! endpoints' rate). The `[http]` section holds them; `http::auth` enforces them.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// What a caller may do, each role including the ones below it: a viewer reads, an operator
/// also redeems points for customers, an admin also overrides tiers, adjusts points and runs
/// recomputes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One bearer token: its role and the SHA-256 of the token (64 hex digits, as
/// `kizuna hash-token` prints it). The token itself is never configured.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenSettings {
    pub role: Role,
    pub sha256: String,
}

/// JWTs issued by an identity provider, checked against its JWKS (RS256/384/512, PS256/384/512,
/// ES256/384, EdDSA; never a shared-secret algorithm).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JwtSettings {
    /// The provider's JSON Web Key Set, e.g. `https://idp.example/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's audiences).
    pub audience: String,
    /// The claim holding the role: `viewer`, `operator` or `admin`, or an array of them (the
    /// highest counts; other values are ignored).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The claim naming the caller, recorded by the audit and keyed by the rate limit.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Seconds the keys are cached; an unknown `kid` fetches them again (at most every 10 s).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

fn default_role_claim() -> String {
    "kizuna_role".to_owned()
}

fn default_name_claim() -> String {
    "sub".to_owned()
}

fn default_refresh_secs() -> u64 {
    300
}

fn default_leeway_secs() -> u64 {
    30
}

/// Longest token name.
const MAX_NAME_LEN: usize = 64;

/// The name the deprecated `http.admin_token` goes by.
pub const LEGACY_ADMIN_NAME: &str = "admin";

/// Whether `name` can name a token: 1 to 64 of `a-z 0-9 _ -` (environment keys are read in
/// lower case, and a dot would split the key).
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Refuses tokens and JWT settings that cannot work.
pub fn check(
    tokens: &BTreeMap<String, TokenSettings>,
    jwt: Option<&JwtSettings>,
    legacy_admin: bool,
) -> anyhow::Result<()> {
    let mut seen = BTreeMap::new();
    for (name, token) in tokens {
        if !valid_token_name(name) {
            bail!("http.tokens.{name}: a token name is 1 to {MAX_NAME_LEN} of a-z, 0-9, _ and -");
        }
        let hash = token.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "http.tokens.{name}.sha256 must be 64 hex digits: the SHA-256 of the token, as `kizuna hash-token` prints it"
            );
        }
        if let Some(other) = seen.insert(hash, name) {
            bail!("http.tokens.{other} and http.tokens.{name} have the same hash");
        }
    }
    if legacy_admin && tokens.contains_key(LEGACY_ADMIN_NAME) {
        bail!(
            "http.admin_token is the token named {LEGACY_ADMIN_NAME:?}: remove it or http.tokens.{LEGACY_ADMIN_NAME}"
        );
    }
    if let Some(j) = jwt {
        let Some((scheme, rest)) = j.jwks_url.split_once("://") else {
            bail!("http.jwt.jwks_url {:?} is not an http(s) URL", j.jwks_url);
        };
        if !matches!(scheme, "http" | "https") || rest.is_empty() {
            bail!("http.jwt.jwks_url {:?} is not an http(s) URL", j.jwks_url);
        }
        if j.issuer.is_empty() || j.audience.is_empty() {
            bail!("http.jwt.issuer and http.jwt.audience are required");
        }
        if j.role_claim.is_empty() || j.name_claim.is_empty() || j.refresh_secs == 0 {
            bail!("http.jwt.role_claim, name_claim and refresh_secs must be set");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, sha256: &str) -> TokenSettings {
        TokenSettings {
            role,
            sha256: sha256.to_owned(),
        }
    }

    #[test]
    fn roles_are_ordered_and_token_settings_are_checked() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator"), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
        let good = "a".repeat(64);
        let mut tokens = BTreeMap::new();
        tokens.insert("desk-1".to_owned(), token(Role::Viewer, &good));
        check(&tokens, None, true).expect("valid");
        tokens.insert("Desk".to_owned(), token(Role::Viewer, &"b".repeat(64)));
        assert!(check(&tokens, None, false).is_err(), "upper case name");
        tokens.remove("Desk");
        tokens.insert("ops".to_owned(), token(Role::Admin, &"A".repeat(64)));
        let err = check(&tokens, None, false)
            .expect_err("same hash")
            .to_string();
        assert!(err.contains("same hash"), "{err}");
        tokens.insert("ops".to_owned(), token(Role::Admin, "abc"));
        assert!(check(&tokens, None, false).is_err(), "short hash");
        tokens.remove("ops");
        tokens.insert("admin".to_owned(), token(Role::Admin, &"c".repeat(64)));
        assert!(check(&tokens, None, true).is_err(), "admin twice");
        let jwt = JwtSettings {
            jwks_url: "ftp://idp".into(),
            issuer: "i".into(),
            audience: "a".into(),
            role_claim: default_role_claim(),
            name_claim: default_name_claim(),
            refresh_secs: 300,
            leeway_secs: 30,
        };
        assert!(check(&BTreeMap::new(), Some(&jwt), false).is_err());
    }
}
