//! The settings as data: printed as TOML with every secret redacted (`kizuna config`), and as
//! the `KIZUNA_*` variables that configure an engine the same way.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use super::Settings;

impl Settings {
    /// The configuration as TOML, every secret redacted (`kizuna config`).
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        toml::to_string_pretty(self).context("printing the configuration")
    }

    /// The `KIZUNA_*` environment variables that configure an engine exactly like these
    /// settings (secrets included: for child processes, never for printing). Tests and the
    /// bench start engines with them. librdkafka properties (`kafka.properties`,
    /// `kafka.secret_properties`) have dots in their names, which environment keys cannot
    /// carry: settings with any are refused here (give them in a file).
    pub fn to_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        if !self.kafka.properties.is_empty() || !self.kafka.secret_properties.is_empty() {
            bail!(
                "kafka.properties and kafka.secret_properties cannot be passed as environment variables; use a config file"
            );
        }
        let mut value = toml::Value::try_from(self).context("serialising the settings")?;
        if let Some(kafka) = value.get_mut("kafka").and_then(toml::Value::as_table_mut) {
            kafka.remove("properties");
            kafka.remove("secret_properties");
        }
        let mut out = Vec::new();
        flatten("KIZUNA_", &value, &mut out);
        let mut exposed = self.clone();
        for (key, secret) in exposed.secrets_mut() {
            let name = format!("KIZUNA_{}", key.replace('.', "__").to_uppercase());
            let secret = secret.expose_secret().to_owned();
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = secret,
                None => out.push((name, secret)),
            }
        }
        Ok(out)
    }
}

/// `KIZUNA_SECTION__KEY=value` for every leaf of `value`.
fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let sep = if prefix.ends_with('_') { "" } else { "__" };
                flatten(&format!("{prefix}{sep}{}", key.to_uppercase()), v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

pub(super) fn redacted_url<S: serde::Serializer>(
    url: &SecretString,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url.expose_secret()))
}

pub(super) fn redacted_option<S: serde::Serializer>(
    secret: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

pub(super) fn redacted_map<S: serde::Serializer>(
    map: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(map.len()))?;
    for key in map.keys() {
        m.serialize_entry(key, "<redacted>")?;
    }
    m.end()
}

/// Replaces the password of a `scheme://user:password@host/…` URL.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:<redacted>@{host}")
        }
        None => url.to_owned(),
    }
}
