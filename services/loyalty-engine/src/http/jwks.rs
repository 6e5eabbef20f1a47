//! JWTs of an identity provider (`http.jwt`), checked against its JSON Web Key Set.
//!
//! The keys are fetched from `jwks_url` on first use and cached for `refresh_secs`; a token
//! signed with a key id the cache does not know fetches them again, at most every
//! [`MIN_REFETCH`], so a flood of made-up key ids cannot flood the provider. When a fetch fails
//! the keys already cached keep serving; with none, the caller gets 503.
//!
//! Only asymmetric algorithms are accepted, and a key's own `alg`, when it states one, must be
//! the token's: a token cannot choose how it is verified. `iss`, `aud` and `exp` are required
//! (`nbf` is checked when present), with `leeway_secs` of clock skew.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use crate::config::access::{JwtSettings, Role};

/// The shortest time between two fetches of the key set.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Longest name claim kept, in characters.
const MAX_NAME_LEN: usize = 200;

/// The algorithms a JWT may use: the asymmetric ones.
const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a JWT was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    /// The token is not valid; a low-cardinality reason (`malformed`, `algorithm`,
    /// `unknown_key`, `signature`, `expired`, `issuer`, `audience`, `claims`).
    Invalid(&'static str),
    /// No keys: the key set could not be fetched.
    Unavailable,
}

#[derive(Debug)]
struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

/// The identity provider's keys and the checks of its tokens.
#[derive(Debug)]
pub struct Jwks {
    settings: JwtSettings,
    http: reqwest::Client,
    cache: RwLock<Option<Arc<Cached>>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            settings: settings.clone(),
            http,
            cache: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub fn role_claim(&self) -> &str {
        &self.settings.role_claim
    }

    fn cached(&self) -> Option<Arc<Cached>> {
        self.cache.read().ok().and_then(|c| c.clone())
    }

    /// The key set, holding `kid` if the provider has it: the cache while it is fresh and
    /// knows `kid`, else fetched again (at most every [`MIN_REFETCH`]).
    async fn keys(&self, kid: Option<&str>) -> Result<Arc<Cached>, JwtRefusal> {
        let refresh = Duration::from_secs(self.settings.refresh_secs);
        let good = |c: &Cached| {
            c.fetched.elapsed() < refresh && kid.is_none_or(|k| c.keys.find(k).is_some())
        };
        if let Some(c) = self.cached().filter(|c| good(c)) {
            return Ok(c);
        }
        let _one = self.fetching.lock().await;
        let cached = self.cached();
        if let Some(c) = &cached
            && (good(c) || c.fetched.elapsed() < MIN_REFETCH)
        {
            return Ok(c.clone());
        }
        match self.fetch().await {
            Ok(keys) => {
                let fresh = Arc::new(Cached {
                    keys,
                    fetched: Instant::now(),
                });
                if let Ok(mut c) = self.cache.write() {
                    *c = Some(fresh.clone());
                }
                Ok(fresh)
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    url = self.settings.jwks_url,
                    "fetching the JWKS failed"
                );
                cached.ok_or(JwtRefusal::Unavailable)
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let response = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json::<JwkSet>().await?)
    }

    /// Checks `token`: its name claim and its role (`None` when the role claim names none).
    pub async fn verify(&self, token: &str) -> Result<(String, Option<Role>), JwtRefusal> {
        let header = decode_header(token).map_err(|_| JwtRefusal::Invalid("malformed"))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(JwtRefusal::Invalid("algorithm"));
        }
        let cached = self.keys(header.kid.as_deref()).await?;
        let jwk = key_for(&cached.keys, header.kid.as_deref())
            .ok_or(JwtRefusal::Invalid("unknown_key"))?;
        if let Some(alg) = jwk.common.key_algorithm
            && format!("{alg:?}") != format!("{:?}", header.alg)
        {
            return Err(JwtRefusal::Invalid("algorithm"));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtRefusal::Invalid("unknown_key"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway_secs;
        let data = decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            JwtRefusal::Invalid(match e.kind() {
                ErrorKind::InvalidSignature => "signature",
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => "expired",
                ErrorKind::InvalidIssuer => "issuer",
                ErrorKind::InvalidAudience => "audience",
                ErrorKind::MissingRequiredClaim(_) => "claims",
                _ => "malformed",
            })
        })?;
        let claims = data.claims;
        let name = claims
            .get(&self.settings.name_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME_LEN)
            .ok_or(JwtRefusal::Invalid("claims"))?;
        Ok((
            name.to_owned(),
            role_of(claims.get(&self.settings.role_claim)),
        ))
    }
}

/// The key named `kid`, or the only key when the token names none.
fn key_for<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(k) => keys.find(k),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

/// The highest role a role claim names: a string, or an array of strings.
fn role_of(claim: Option<&Value>) -> Option<Role> {
    match claim? {
        Value::String(s) => Role::parse(s),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().and_then(Role::parse))
            .max(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_highest_role_of_a_claim_counts() {
        assert_eq!(role_of(Some(&json!("viewer"))), Some(Role::Viewer));
        assert_eq!(
            role_of(Some(&json!(["viewer", "admin", "root"]))),
            Some(Role::Admin)
        );
        assert_eq!(role_of(Some(&json!("root"))), None);
        assert_eq!(role_of(Some(&json!(3))), None);
        assert_eq!(role_of(None), None);
    }
}
