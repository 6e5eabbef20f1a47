//! Roles on every endpoint: who is calling ([`Principal`]) and whether their role is enough.
//!
//! A caller shows `Authorization: Bearer <token>`: a token whose SHA-256 is one of
//! `http.tokens` (or the deprecated `http.admin_token`, the admin token named `admin`), or a
//! JWT of the identity provider in `http.jwt` ([`jwks`](super::jwks)). The extractors
//! [`Viewer`], [`Operator`] and [`Admin`] admit a role and the ones above it; they run before
//! the body is read. Admin calls are rate limited per caller name.
//!
//! - no access configured at all: 403 `access-not-configured` (nothing is open by default);
//! - no or an unknown token, a JWT that does not verify: 401 with `WWW-Authenticate: Bearer`;
//! - a role below the endpoint's: 403 `role-required`, naming the role needed;
//! - admin calls over `http.admin_requests_per_minute`: 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::jwks::{Jwks, JwtRefusal};
use super::problem::Problem;
use crate::config::HttpSettings;
use crate::config::access::{LEGACY_ADMIN_NAME, Role};

/// `WWW-Authenticate` of a 401 for a token that was given but is not valid (RFC 6750).
pub const INVALID_TOKEN_CHALLENGE: &str = "Bearer realm=\"kizuna\", error=\"invalid_token\"";

/// Who is calling, and as what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or `jwt:` and the JWT's name claim: what the audit records.
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// What an audit entry records as its author: the caller's name, then what the request
    /// says on its own (`set_by`, `X-Kizuna-Operator`) in brackets, if anything.
    pub fn audit_name(&self, declared: Option<&str>) -> String {
        match declared.map(str::trim).filter(|d| !d.is_empty()) {
            Some(d) => format!("{} ({d})", self.name),
            None => self.name.clone(),
        }
    }
}

/// A configured bearer token.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    role: Role,
    sha256: [u8; 32],
}

type Keyed = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    DefaultClock,
    governor::middleware::NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

/// The access rules of the API: tokens, the JWT issuer, the admin rate limit.
#[derive(Debug)]
pub struct Access {
    tokens: Vec<Token>,
    jwt: Option<Jwks>,
    admin_limit: Option<Keyed>,
    clock: DefaultClock,
}

/// The SHA-256 of a token, as 64 lower-case hex digits: what `http.tokens.<name>.sha256`
/// holds (`kizuna hash-token`).
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Access {
    /// The access rules of `http`'s settings (already checked by `Settings::check`).
    pub fn new(http: &HttpSettings) -> anyhow::Result<Self> {
        let mut tokens = Vec::new();
        for (name, t) in &http.tokens {
            let Some(sha256) = unhex(&t.sha256.to_ascii_lowercase()) else {
                anyhow::bail!("http.tokens.{name}.sha256 must be 64 hex digits");
            };
            tokens.push(Token {
                name: name.clone(),
                role: t.role,
                sha256,
            });
        }
        if let Some(legacy) = &http.admin_token
            && !legacy.expose_secret().is_empty()
        {
            tokens.push(Token {
                name: LEGACY_ADMIN_NAME.to_owned(),
                role: Role::Admin,
                sha256: Sha256::digest(legacy.expose_secret().as_bytes()).into(),
            });
        }
        let jwt = http.jwt.as_ref().map(Jwks::new).transpose()?;
        let admin_limit = NonZeroU32::new(http.admin_requests_per_minute).map(|rate| {
            let burst = NonZeroU32::new(http.admin_burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::hashmap(Quota::per_minute(rate).allow_burst(burst))
        });
        Ok(Self {
            tokens,
            jwt,
            admin_limit,
            clock: DefaultClock::default(),
        })
    }

    /// Whether anyone at all can be admitted.
    pub fn configured(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// What is configured, for the start-up log: token names by role, and whether JWTs are.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Role::ALL
            .iter()
            .map(|role| {
                let names: Vec<&str> = self
                    .tokens
                    .iter()
                    .filter(|t| t.role == *role)
                    .map(|t| t.name.as_str())
                    .collect();
                format!("{}: [{}]", role.as_str(), names.join(", "))
            })
            .collect();
        parts.push(format!("jwt: {}", self.jwt.is_some()));
        parts.join("; ")
    }

    /// The caller of a request with `headers`, if their role is at least `needed`.
    pub async fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<Principal, Problem> {
        if !self.configured() {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "access-not-configured",
                "No access is configured",
                "no caller can be admitted: configure http.tokens (see `kizuna hash-token`) or http.jwt",
            ));
        }
        let Some(given) = bearer(headers) else {
            return Err(Problem::bearer_required());
        };
        let principal = match self.token(given) {
            Some(p) => p,
            None => self.jwt(given).await?,
        };
        if principal.role < needed {
            return Err(role_required(needed, &principal));
        }
        if needed == Role::Admin
            && let Some(limit) = &self.admin_limit
            && let Err(not_until) = limit.check_key(&principal.name)
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(rate_limited(wait));
        }
        Ok(principal)
    }

    /// The configured token `given` is, compared in constant time with every one of them.
    fn token(&self, given: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.ct_eq(&digest)) {
                found = Some(Principal {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found
    }

    async fn jwt(&self, given: &str) -> Result<Principal, Problem> {
        let Some(jwks) = &self.jwt else {
            return Err(invalid_token("the bearer token is not valid"));
        };
        if given.split('.').count() != 3 {
            return Err(invalid_token("the bearer token is not valid"));
        }
        match jwks.verify(given).await {
            Ok((name, Some(role))) => Ok(Principal {
                name: format!("jwt:{name}"),
                role,
            }),
            Ok((_, None)) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "role-required",
                "The caller's role is not enough",
                format!(
                    "the token carries no role (viewer, operator or admin) in its {:?} claim",
                    jwks.role_claim()
                ),
            )),
            Err(JwtRefusal::Invalid(why)) => {
                Err(invalid_token(format!("the JWT is not valid: {why}")).reason(why))
            }
            Err(JwtRefusal::Unavailable) => Err(Problem::unavailable(
                "the identity provider's keys (http.jwt.jwks_url) could not be fetched",
            )
            .retry_after(5)),
        }
    }
}

/// The bearer token of `Authorization`, if any (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn invalid_token(detail: impl Into<String>) -> Problem {
    Problem::status(StatusCode::UNAUTHORIZED, detail).challenge(INVALID_TOKEN_CHALLENGE)
}

/// 403 `role-required`: the caller is known, their role is below `needed`.
fn role_required(needed: Role, who: &Principal) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "role-required",
        "The caller's role is not enough",
        format!(
            "this endpoint needs the {} role; {} has {}",
            needed.as_str(),
            who.name,
            who.role.as_str()
        ),
    )
    .required_role(needed.as_str())
}

/// 429 `rate-limited`, with `Retry-After` in whole seconds (rounded up).
fn rate_limited(wait: Duration) -> Problem {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Problem::status(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many admin requests from this caller (http.admin_requests_per_minute); retry in {secs} s"
        ),
    )
    .retry_after(secs)
}

/// Defines an extractor that admits `$role` and the roles above it, carrying the
/// [`Principal`].
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = Problem;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Problem> {
                state.access.authorize(&parts.headers, $role).await.map($name)
            }
        }
    };
}

role_extractor!(
    /// A viewer or above: reads.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// An operator or above: redemptions for customers.
    Operator,
    Role::Operator
);
role_extractor!(
    /// An admin: tier overrides, adjustments, recomputes; rate limited per caller.
    Admin,
    Role::Admin
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use secrecy::SecretString;

    use super::*;
    use crate::config::Settings;
    use crate::config::access::TokenSettings;

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        h
    }

    fn access(per_minute: u32) -> Access {
        let mut http = Settings::load(None).expect("defaults").http;
        http.tokens = BTreeMap::from([(
            "desk".to_owned(),
            TokenSettings {
                role: Role::Viewer,
                sha256: hash_token("viewer-secret").to_ascii_uppercase(),
            },
        )]);
        http.admin_token = Some(SecretString::from("legacy-admin"));
        http.admin_requests_per_minute = per_minute;
        http.admin_burst = 2;
        Access::new(&http).expect("access")
    }

    #[tokio::test]
    async fn tokens_admit_their_role_and_those_below() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let a = access(0);
        let p = a
            .authorize(&headers(Some("viewer-secret")), Role::Viewer)
            .await
            .expect("a viewer reads");
        assert_eq!(p.name, "desk");
        let refused = a
            .authorize(&headers(Some("viewer-secret")), Role::Operator)
            .await
            .expect_err("not an operator");
        assert_eq!(refused.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(refused.details().required_role, Some("operator"));
        let admin = a
            .authorize(&headers(Some("legacy-admin")), Role::Admin)
            .await
            .expect("the legacy admin token");
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.audit_name(Some(" ops-lead ")), "admin (ops-lead)");
        assert_eq!(admin.audit_name(Some("")), "admin");
        for h in [headers(None), headers(Some("nope"))] {
            let p = a.authorize(&h, Role::Viewer).await.expect_err("401");
            assert_eq!(p.status_code(), StatusCode::UNAUTHORIZED);
        }
        let none = Access::new(&Settings::load(None).expect("defaults").http).expect("access");
        assert!(!none.configured());
        let p = none
            .authorize(&headers(Some("x")), Role::Viewer)
            .await
            .expect_err("closed");
        assert_eq!(p.status_code(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn admin_calls_are_limited_per_caller() {
        let a = access(1);
        for _ in 0..2 {
            a.authorize(&headers(Some("legacy-admin")), Role::Admin)
                .await
                .expect("within the burst");
        }
        let p = a
            .authorize(&headers(Some("legacy-admin")), Role::Admin)
            .await
            .expect_err("over the limit");
        assert_eq!(p.status_code(), StatusCode::TOO_MANY_REQUESTS);
        // Reads are not limited.
        a.authorize(&headers(Some("legacy-admin")), Role::Viewer)
            .await
            .expect("a read");
    }
}
