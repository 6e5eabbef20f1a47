//! Configuration in layers: built-in defaults (`config/default.toml`), then an optional TOML file,
//! then `KIZUNA_GATEWAY_<SECTION>__<KEY>` environment variables (as the engine's
//! `KIZUNA_<SECTION>__<KEY>` and kizuna-webhooks' `KIZUNA_WEBHOOKS_<SECTION>__<KEY>`). Secrets
//! are wrapped so they never print, and may be given as `file:/path`. Impossible combinations
//! are refused at start-up.
//!
//! What the gateway shares with the engine (brokers, topics, input limits, the programme's
//! currency) is not repeated here: it comes from the engine's own [`kizuna::config::Settings`],
//! loaded the way the engine loads it, and is passed to the builder next to these settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kizuna::config::{load_layers, resolve_secret_file};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub rate_limit: RateLimitSettings,
    pub kafka: KafkaSettings,
    pub sources: SourcesSettings,
    pub log: LogSettings,
    /// The mapping file (TOML). Unset: the built-in mapping.
    #[serde(default)]
    pub mapping_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Port 0 picks a free port (tests).
    pub bind: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Requests per second per source; 0 disables the limit.
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    pub delivery_timeout_ms: u64,
    pub linger_ms: u64,
    pub readiness_timeout_ms: u64,
    pub readiness_cache_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SourcesSettings {
    pub shopify: SecretOnly,
    pub zendesk: ZendeskSource,
    pub typeform: SecretOnly,
    pub kizuna: TokenOnly,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretOnly {
    #[serde(default)]
    pub secret: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZendeskSource {
    #[serde(default)]
    pub secret: Option<SecretString>,
    pub timestamp_tolerance_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenOnly {
    #[serde(default)]
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: kizuna::config::LogFormat,
    pub level: String,
}

const DEFAULTS: &str = include_str!("../config/default.toml");

impl Settings {
    /// Loads defaults, then `file` if given, then `KIZUNA_GATEWAY_<SECTION>__<KEY>` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut settings: Settings = load_layers(
            DEFAULTS,
            file,
            "KIZUNA_GATEWAY",
            None,
            "the gateway configuration",
        )?;
        settings.read_secret_files()?;
        settings.check()?;
        Ok(settings)
    }

    /// The built-in defaults alone: no file, no environment, no checks (tests and the bench set
    /// what they need, then [`Gateway::build`](crate::startup::Gateway::build) checks).
    pub fn defaults() -> anyhow::Result<Self> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .context("reading the gateway defaults")?
            .try_deserialize()
            .context("the gateway defaults are not valid")
    }

    /// Secrets may be given as `file:/path`: the file's content, trimmed of trailing newlines.
    pub fn read_secret_files(&mut self) -> anyhow::Result<()> {
        fn resolve(what: &str, secret: &mut Option<SecretString>) -> anyhow::Result<()> {
            let Some(value) = secret.as_mut() else {
                return Ok(());
            };
            resolve_secret_file(what, value)?;
            // An empty value (e.g. an unset variable expanded to "") means "not configured".
            if value.expose_secret().is_empty() {
                *secret = None;
            }
            Ok(())
        }
        let s = &mut self.sources;
        resolve("sources.shopify.secret", &mut s.shopify.secret)?;
        resolve("sources.zendesk.secret", &mut s.zendesk.secret)?;
        resolve("sources.typeform.secret", &mut s.typeform.secret)?;
        resolve("sources.kizuna.token", &mut s.kizuna.token)?;
        Ok(())
    }

    /// Refuses combinations that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        let s = &self.sources;
        if s.shopify.secret.is_none()
            && s.zendesk.secret.is_none()
            && s.typeform.secret.is_none()
            && s.kizuna.token.is_none()
        {
            bail!(
                "no source is enabled: set at least one of sources.shopify.secret, sources.zendesk.secret, sources.typeform.secret, sources.kizuna.token (e.g. KIZUNA_GATEWAY_SOURCES__SHOPIFY__SECRET=file:/run/secrets/shopify)"
            );
        }
        if self.http.max_body_bytes == 0 {
            bail!("http.max_body_bytes must be positive");
        }
        if self.kafka.delivery_timeout_ms == 0 {
            bail!("kafka.delivery_timeout_ms must be positive");
        }
        if self.kafka.delivery_timeout_ms >= self.http.request_timeout_ms {
            bail!(
                "kafka.delivery_timeout_ms ({}) must stay under http.request_timeout_ms ({}): the producer must give up, and the request get its 503, before the request times out",
                self.kafka.delivery_timeout_ms,
                self.http.request_timeout_ms
            );
        }
        if self.kafka.linger_ms >= self.kafka.delivery_timeout_ms {
            bail!(
                "kafka.linger_ms ({}) must stay well under kafka.delivery_timeout_ms ({})",
                self.kafka.linger_ms,
                self.kafka.delivery_timeout_ms
            );
        }
        if self.rate_limit.per_second > 0 && self.rate_limit.burst == 0 {
            bail!(
                "rate_limit.burst must be at least 1 when rate_limit.per_second is set (0 would refuse every request)"
            );
        }
        if s.zendesk.secret.is_some() && s.zendesk.timestamp_tolerance_secs == 0 {
            bail!(
                "sources.zendesk.timestamp_tolerance_secs must be positive: Zendesk's timestamp is the moment it signed, never the moment the request arrives"
            );
        }
        Ok(())
    }

    /// The configuration as TOML, with every secret replaced by `<redacted>`.
    pub fn redacted_dump(&self) -> String {
        let set = |s: &Option<SecretString>| {
            if s.is_some() {
                "\"<redacted>\""
            } else {
                "\"<unset>\""
            }
        };
        format!(
            "mapping_file = {:?}\n\n[http]\nbind = \"{}\"\nmax_body_bytes = {}\nrequest_timeout_ms = {}\n\n[rate_limit]\nper_second = {}\nburst = {}\n\n[kafka]\ndelivery_timeout_ms = {}\nlinger_ms = {}\nreadiness_timeout_ms = {}\nreadiness_cache_ms = {}\n\n[sources.shopify]\nsecret = {}\n\n[sources.zendesk]\nsecret = {}\ntimestamp_tolerance_secs = {}\n\n[sources.typeform]\nsecret = {}\n\n[sources.kizuna]\ntoken = {}\n",
            self.mapping_file
                .as_ref()
                .map_or_else(|| "<built-in>".to_owned(), |p| p.display().to_string()),
            self.http.bind,
            self.http.max_body_bytes,
            self.http.request_timeout_ms,
            self.rate_limit.per_second,
            self.rate_limit.burst,
            self.kafka.delivery_timeout_ms,
            self.kafka.linger_ms,
            self.kafka.readiness_timeout_ms,
            self.kafka.readiness_cache_ms,
            set(&self.sources.shopify.secret),
            set(&self.sources.zendesk.secret),
            self.sources.zendesk.timestamp_tolerance_secs,
            set(&self.sources.typeform.secret),
            set(&self.sources.kizuna.token),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_shopify() -> Settings {
        let mut s = Settings::defaults().expect("defaults");
        s.sources.shopify.secret = Some(SecretString::from("hush"));
        s
    }

    #[test]
    fn defaults_with_one_source_pass_their_checks() {
        assert!(with_shopify().check().is_ok());
    }

    #[test]
    fn no_source_at_all_is_refused() {
        let mut s = with_shopify();
        s.sources.shopify.secret = None;
        let err = s.check().expect_err("nothing to serve").to_string();
        assert!(err.contains("no source is enabled"), "{err}");
    }

    #[test]
    fn a_delivery_timeout_beyond_the_request_timeout_is_refused() {
        let mut s = with_shopify();
        s.kafka.delivery_timeout_ms = s.http.request_timeout_ms;
        let err = s.check().expect_err("must be refused").to_string();
        assert!(err.contains("request_timeout_ms"), "{err}");
    }

    #[test]
    fn a_rate_limit_without_burst_is_refused() {
        let mut s = with_shopify();
        s.rate_limit.burst = 0;
        assert!(s.check().is_err());
        s.rate_limit.per_second = 0;
        assert!(s.check().is_ok(), "no limit, no burst needed");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = std::env::temp_dir().join(format!("kizuna-gw-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("shopify");
        std::fs::write(&file, "from-a-file\n").expect("write secret");
        let mut s = with_shopify();
        s.sources.shopify.secret = Some(SecretString::from(format!("file:{}", file.display())));
        s.read_secret_files().expect("readable");
        assert_eq!(
            s.sources
                .shopify
                .secret
                .as_ref()
                .map(|x| x.expose_secret().to_owned()),
            Some("from-a-file".to_owned())
        );
        assert!(!s.redacted_dump().contains("from-a-file"));
        assert!(!format!("{s:?}").contains("from-a-file"));
        s.sources.typeform.secret = Some(SecretString::from("file:/nonexistent/typeform"));
        let err = s.read_secret_files().expect_err("missing file").to_string();
        assert!(err.contains("sources.typeform.secret"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
