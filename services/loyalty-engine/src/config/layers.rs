//! Reading settings in layers: built-in defaults, then an optional TOML file, then environment
//! variables (`<PREFIX>_<SECTION>__<KEY>`), and secrets given as `file:/path`. The engine,
//! kizuna-gateway and kizuna-webhooks read their settings this way.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

/// `defaults` (TOML), then `file` if given, then the `<prefix>_<SECTION>__<KEY>` variables
/// (taken from `env` instead of the process's environment when given), as a `T`. `what` names
/// the configuration in errors ("reading {what}", "{what} is not valid").
pub fn load_layers<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    prefix: &str,
    env: Option<HashMap<String, String>>,
    what: &str,
) -> anyhow::Result<T> {
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        if !path.exists() {
            bail!("config file {} does not exist", path.display());
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(prefix)
            .prefix_separator("_")
            .separator("__")
            .source(env),
    );
    builder
        .build()
        .with_context(|| format!("reading {what}"))?
        .try_deserialize()
        .with_context(|| format!("{what} is not valid"))
}

/// A secret given as `file:/path` (Kubernetes and Docker secrets) becomes the file's content,
/// trimmed of trailing newlines. `what` names the setting in errors.
pub fn resolve_secret_file(what: &str, secret: &mut SecretString) -> anyhow::Result<()> {
    if let Some(path) = secret.expose_secret().strip_prefix("file:") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret file of {what} ({path})"))?;
        *secret = SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(())
}
