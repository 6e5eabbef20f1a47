//! Console sessions: a login token (`console.viewer_token` or `console.admin_token`) is
//! exchanged for an HttpOnly, SameSite=Strict cookie, and every form carries a CSRF token.
//!
//! Sessions are stateless, so they work across instances and restarts: the cookie is
//! `role.expires.nonce.mac`, where `mac` is HMAC-SHA256 keyed with the role's token. Changing a
//! token ends that role's sessions. The CSRF token of a session is an HMAC of its nonce under
//! the same key (a synchronizer token nobody without the session can compute).

use axum::http::{HeaderMap, header};
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kizuna_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A logged-in person.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub expires: DateTime<Utc>,
    nonce: String,
    csrf: String,
}

impl Session {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        constant_eq(given.as_bytes(), self.csrf.as_bytes())
    }
}

/// The tokens and how sessions are made.
#[derive(Debug, Clone)]
pub struct Keys {
    viewer: Option<SecretString>,
    admin: Option<SecretString>,
    pub hours: u32,
    pub secure: bool,
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &SecretString, parts: &[&str]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()) else {
        return String::new();
    };
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"|");
    }
    hex(&m.finalize().into_bytes())
}

impl Keys {
    pub fn new(settings: &crate::config::ConsoleSettings) -> Self {
        let usable = |t: &Option<SecretString>| t.clone().filter(|t| !t.expose_secret().is_empty());
        Self {
            viewer: usable(&settings.viewer_token),
            admin: usable(&settings.admin_token),
            hours: settings.session_hours,
            secure: settings.secure_cookie,
        }
    }

    /// Whether anyone can log in at all.
    pub fn open(&self) -> bool {
        self.viewer.is_some() || self.admin.is_some()
    }

    fn key(&self, role: Role) -> Option<&SecretString> {
        match role {
            Role::Viewer => self.viewer.as_ref(),
            Role::Admin => self.admin.as_ref(),
        }
    }

    /// The role a login token opens, compared in constant time with both tokens.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let mut found = None;
        for role in [Role::Viewer, Role::Admin] {
            if let Some(key) = self.key(role)
                && constant_eq(token.as_bytes(), key.expose_secret().as_bytes())
            {
                found = Some(role);
            }
        }
        found
    }

    fn session(&self, role: Role, expires: i64, nonce: &str) -> Option<Session> {
        let key = self.key(role)?;
        Some(Session {
            role,
            expires: DateTime::from_timestamp(expires, 0)?,
            nonce: nonce.to_owned(),
            csrf: mac(key, &["csrf", nonce]),
        })
    }

    /// A new session for `role`, and its cookie's value.
    pub fn login(&self, role: Role, now: DateTime<Utc>) -> Option<(Session, String)> {
        let key = self.key(role)?;
        let expires = (now + Duration::hours(i64::from(self.hours))).timestamp();
        let nonce = hex(&rand::random::<[u8; 16]>());
        let expires_s = expires.to_string();
        let tag = mac(key, &["session", role.as_str(), &expires_s, &nonce]);
        let session = self.session(role, expires, &nonce)?;
        Some((
            session,
            format!("{}.{expires_s}.{nonce}.{tag}", role.as_str()),
        ))
    }

    /// The session of a request, if its cookie is genuine and current.
    pub fn session_of(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Session> {
        let value = cookie(headers, SESSION_COOKIE)?;
        let mut parts = value.split('.');
        let (role, expires, nonce, tag) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let role = Role::parse(role)?;
        let key = self.key(role)?;
        let expected = mac(key, &["session", role.as_str(), expires, nonce]);
        if !constant_eq(tag.as_bytes(), expected.as_bytes()) {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires <= now.timestamp() {
            return None;
        }
        let session = self.session(role, expires, nonce)?;
        debug_assert_eq!(session.nonce, nonce);
        Some(session)
    }

    /// `Set-Cookie` for a session.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{SESSION_COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
            i64::from(self.hours) * 3600,
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that ends the session.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleSettings;

    fn keys() -> Keys {
        Keys::new(&ConsoleSettings {
            viewer_token: Some(SecretString::from("view")),
            admin_token: Some(SecretString::from("adm")),
            ..Default::default()
        })
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("other=1; {SESSION_COOKIE}={value}")
                .parse()
                .expect("header"),
        );
        h
    }

    #[test]
    fn a_session_round_trips_and_a_forged_one_does_not() {
        let k = keys();
        let now = Utc::now();
        assert_eq!(k.role_of("adm"), Some(Role::Admin));
        assert_eq!(k.role_of("view"), Some(Role::Viewer));
        assert_eq!(k.role_of("nope"), None);
        let (s, value) = k.login(Role::Viewer, now).expect("session");
        let back = k.session_of(&with_cookie(&value), now).expect("valid");
        assert_eq!(back.role, Role::Viewer);
        assert!(back.csrf_ok(s.csrf()));
        // A viewer cannot promote their cookie to admin.
        let forged = value.replacen("viewer", "admin", 1);
        assert!(k.session_of(&with_cookie(&forged), now).is_none());
        // Expired.
        assert!(
            k.session_of(&with_cookie(&value), now + Duration::hours(13))
                .is_none()
        );
        assert!(!back.csrf_ok("00"));
    }
}
