//! The combinations of settings that cannot work, refused at start-up.

use anyhow::bail;
use secrecy::ExposeSecret;

use super::{OutputFormat, Settings};

impl Settings {
    /// Refuses combinations that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.ingest.writers == 0 || self.ingest.writers > 16 {
            bail!("ingest.writers must be between 1 and 16");
        }
        if self.ingest.batch_max_events == 0 {
            bail!("ingest.batch_max_events must be at least 1");
        }
        let session = self.kafka.session_timeout_ms;
        if self.ingest.batch_linger_ms * 2 >= session {
            bail!(
                "ingest.batch_linger_ms ({}) must stay well under kafka.session_timeout_ms ({session}) so a rebalance can finish the in-flight batch in time",
                self.ingest.batch_linger_ms
            );
        }
        if let Some(drain) = self.ingest.revoke_drain_ms
            && drain * 2 >= session
        {
            bail!(
                "ingest.revoke_drain_ms ({drain}) must stay under half of kafka.session_timeout_ms ({session}): a rebalance must finish before the session expires"
            );
        }
        let inputs = self.kafka.topics.inputs();
        for out in self.kafka.topics.outputs() {
            if inputs.contains(&out) {
                bail!("topic {out:?} is configured as both an input and an output");
            }
        }
        if self.kafka.partitions < 1 {
            bail!("kafka.partitions must be at least 1");
        }
        if self.ledger.prune_interval_secs == 0 {
            bail!("ledger.prune_interval_secs must be positive");
        }
        if self.metrics.refresh_secs == 0
            || self.metrics.population_refresh_secs == 0
            || self.metrics.model_refresh_secs == 0
        {
            bail!(
                "metrics.refresh_secs, population_refresh_secs and model_refresh_secs must be positive"
            );
        }
        if self.sweep.batch_size < 1 || self.sweep.interval_ms == 0 {
            bail!("sweep.batch_size and sweep.interval_ms must be positive");
        }
        if self.console.refresh_secs == 0 || self.console.session_hours == 0 {
            bail!("console.refresh_secs and console.session_hours must be positive");
        }
        if let (Some(v), Some(a)) = (&self.console.viewer_token, &self.console.admin_token)
            && v.expose_secret() == a.expose_secret()
        {
            bail!("console.viewer_token and console.admin_token must differ");
        }
        super::access::check(
            &self.http.tokens,
            self.http.jwt.as_ref(),
            self.http.admin_token.is_some(),
        )?;
        if self.http.max_body_bytes < 1024 || self.http.request_timeout_ms == 0 {
            bail!("http.max_body_bytes must be at least 1024 and http.request_timeout_ms positive");
        }
        if self.relay.batch_size < 1 {
            bail!("relay.batch_size must be at least 1");
        }
        self.check_telemetry()?;
        self.check_registry()
    }

    fn check_telemetry(&self) -> anyhow::Result<()> {
        let t = &self.telemetry;
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            bail!("telemetry.sampling_ratio must be between 0 and 1");
        }
        if t.export_timeout_ms == 0 {
            bail!("telemetry.export_timeout_ms must be positive");
        }
        if t.service_name.trim().is_empty() {
            bail!("telemetry.service_name must not be empty");
        }
        if let Some(endpoint) = &t.otlp_endpoint {
            let ok = endpoint.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty()
            });
            if !ok {
                bail!("telemetry.otlp_endpoint {endpoint:?} is not an http(s) URL");
            }
        }
        Ok(())
    }

    fn check_registry(&self) -> anyhow::Result<()> {
        let r = &self.registry;
        if let Some(url) = &r.url {
            let Some((scheme, rest)) = url.split_once("://") else {
                bail!("registry.url {url:?} is not an http(s) URL");
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() {
                bail!("registry.url {url:?} is not an http(s) URL");
            }
            if rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
            {
                bail!(
                    "registry.url must not carry credentials; set registry.username and registry.password"
                );
            }
        }
        if r.password.is_some() != r.username.is_some() {
            bail!("registry.username and registry.password go together");
        }
        if r.request_timeout_ms == 0 || r.attempts == 0 || r.cache_size == 0 {
            bail!("registry.request_timeout_ms, attempts and cache_size must be positive");
        }
        if self.outputs.format == OutputFormat::ConfluentProtobuf && r.url.is_none() {
            bail!("outputs.format = \"confluent-protobuf\" needs registry.url");
        }
        Ok(())
    }
}
