//! From a platform's payload to kizuna.v1 events, driven by the mapping file
//! (`config/mapping.toml`, documented key by key). Pure functions: a parsed JSON payload in,
//! drafts of `kizuna.v1` wire events out (their event ids are assigned afterwards, from the
//! delivery id; see [`crate::idempotency`]), or a [`MapError`] naming the payload field.

pub mod kizuna_json;
pub mod shopify;
pub mod typeform;
pub mod zendesk;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kizuna::inputs::decode::{InputKind, WireEvent};
use serde::Deserialize;
use serde_json::Value;

/// The whole mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub shopify: shopify::ShopifyMapping,
    pub zendesk: zendesk::ZendeskMapping,
    pub typeform: typeform::TypeformMapping,
}

const BUILT_IN: &str = include_str!("../../config/mapping.toml");

impl Mapping {
    /// The built-in mapping.
    pub fn built_in() -> anyhow::Result<Self> {
        Self::parse_over_built_in("")
    }

    /// The built-in mapping with `file` laid over it, or the built-in one alone.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        match file {
            None => Self::built_in(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the mapping file {}", path.display()))?;
                Self::parse_over_built_in(&text)
                    .with_context(|| format!("mapping file {}", path.display()))
            }
        }
    }

    /// `text` (a mapping file) laid over the built-in mapping, table by table.
    pub fn parse_over_built_in(text: &str) -> anyhow::Result<Self> {
        let mut base: toml::Table = BUILT_IN.parse().context("the built-in mapping")?;
        let over: toml::Table = text.parse().context("not valid TOML")?;
        merge(&mut base, over);
        let mapping: Mapping = toml::Value::Table(base)
            .try_into()
            .context("not a valid mapping")?;
        mapping.check()?;
        Ok(mapping)
    }

    fn check(&self) -> anyhow::Result<()> {
        for (what, paths) in [
            ("shopify.customer_id", &self.shopify.customer_id),
            ("zendesk.customer_id", &self.zendesk.customer_id),
            ("typeform.customer_id", &self.typeform.customer_id),
        ] {
            if paths.is_empty() {
                anyhow::bail!("{what} needs at least one path");
            }
        }
        self.zendesk.check()?;
        self.typeform.check()?;
        Ok(())
    }
}

/// Lays `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A kizuna.v1 event the mapping produced, before its event id is assigned.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The event; its `event_id` is empty until [`Draft::assign_event_id`] (except events of the
    /// generic endpoint, which carry their own).
    pub event: WireEvent,
    /// What this event is within its delivery (e.g. `order`, `answer:<ref>`), so that one delivery
    /// giving several events gives each its own, stable, id.
    pub part: String,
    /// When set, the event id derives from this instead of the delivery id (a Shopify refund
    /// id: the same refund arrives in many order updates).
    pub id_key: Option<String>,
    /// kizuna.v1 field → the payload field it came from, to name the payload field when the
    /// engine's rules refuse the value.
    pub provenance: Vec<(&'static str, String)>,
}

impl Draft {
    pub fn new(event: WireEvent, part: impl Into<String>) -> Self {
        Self {
            event,
            part: part.into(),
            id_key: None,
            provenance: Vec::new(),
        }
    }

    pub fn from(mut self, kizuna_field: &'static str, payload_path: impl Into<String>) -> Self {
        self.provenance.push((kizuna_field, payload_path.into()));
        self
    }

    pub fn kind(&self) -> InputKind {
        match &self.event {
            WireEvent::Purchase(_) => InputKind::Purchase,
            WireEvent::SupportTicket(_) => InputKind::SupportTicket,
            WireEvent::Survey(_) => InputKind::Survey,
            WireEvent::Redemption(_) => InputKind::Redemption,
        }
    }

    pub fn event_id(&self) -> &str {
        match &self.event {
            WireEvent::Purchase(p) => &p.event_id,
            WireEvent::SupportTicket(t) => &t.event_id,
            WireEvent::Survey(s) => &s.event_id,
            WireEvent::Redemption(r) => &r.event_id,
        }
    }

    pub fn customer_id(&self) -> &str {
        match &self.event {
            WireEvent::Purchase(p) => &p.customer_id,
            WireEvent::SupportTicket(t) => &t.customer_id,
            WireEvent::Survey(s) => &s.customer_id,
            WireEvent::Redemption(r) => &r.customer_id,
        }
    }

    pub fn assign_event_id(&mut self, id: String) {
        match &mut self.event {
            WireEvent::Purchase(p) => p.event_id = id,
            WireEvent::SupportTicket(t) => t.event_id = id,
            WireEvent::Survey(s) => s.event_id = id,
            WireEvent::Redemption(r) => r.event_id = id,
        }
    }

    /// The payload field a kizuna.v1 field came from, if the mapping recorded it.
    pub fn payload_field(&self, kizuna_field: &str) -> Option<&str> {
        self.provenance
            .iter()
            .find(|(k, _)| *k == kizuna_field)
            .map(|(_, p)| p.as_str())
    }
}

/// What a payload maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Events(Vec<Draft>),
    /// Nothing Kizuna records (an event type that is not mapped, an order update without
    /// refunds): answered 200, counted as `ignored`.
    Ignored(String),
}

/// A payload that cannot be mapped: answered 422, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct MapError {
    /// The payload field (dotted path) or header.
    pub field: String,
    /// Low-cardinality: `missing_field`, `invalid_field`, `invalid_timestamp`, `invalid_currency`,
    /// `unsupported_topic`, `unsupported_event`.
    pub reason: &'static str,
    pub detail: String,
}

impl MapError {
    pub fn new(field: impl Into<String>, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason,
            detail: detail.into(),
        }
    }

    pub fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        let detail = format!("{field} is missing or empty");
        Self::new(field, "missing_field", detail)
    }
}

// ---- JSON helpers ---------------------------------------------------------------------------

/// The value at a dotted path (`a.b.0.c`).
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// A value as text: non-empty strings (trimmed), integers digit for digit, other numbers in
/// their shortest exact form. Null, empty strings, booleans and containers give None.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of `paths` that holds text, with the path it came from.
pub fn first_text(value: &Value, paths: &[String]) -> Option<(String, String)> {
    paths
        .iter()
        .find_map(|p| lookup(value, p).and_then(text).map(|t| (t, p.clone())))
}

/// The customer id from the first path that has one, with `prefix`; or the error naming the
/// first path.
pub fn customer_id(
    value: &Value,
    paths: &[String],
    prefix: &str,
) -> Result<(String, String), MapError> {
    first_text(value, paths)
        .map(|(id, path)| (format!("{prefix}{id}"), path))
        .ok_or_else(|| {
            MapError::missing(
                paths
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "customer_id".into()),
            )
        })
}

/// An RFC 3339 time from the first of `paths` that holds one.
pub fn first_time(
    value: &Value,
    paths: &[String],
) -> Result<Option<(DateTime<Utc>, String)>, MapError> {
    for path in paths {
        if let Some(raw) = lookup(value, path).and_then(text) {
            let t = DateTime::parse_from_rfc3339(&raw).map_err(|_| {
                MapError::new(
                    path.clone(),
                    "invalid_timestamp",
                    format!("{path} is not an RFC 3339 time"),
                )
            })?;
            return Ok(Some((t.with_timezone(&Utc), path.clone())));
        }
    }
    Ok(None)
}

pub fn timestamp(t: DateTime<Utc>) -> kizuna_proto::Timestamp {
    kizuna_proto::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// ISO 4217 minor-unit exponent. Currencies not listed use 2.
pub fn currency_exponent(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// An exact decimal amount (`"404.95"`, or a JSON number) in minor units of a currency with
/// `exponent` decimals. Refuses more significant decimals than the currency has, and overflow.
pub fn minor_units(value: &Value, exponent: u32) -> Result<i64, String> {
    let raw = match value {
        Value::String(s) => s.trim().to_owned(),
        // Shortest round-trip form: 89.99 stays "89.99".
        Value::Number(n) => n.to_string(),
        _ => return Err("is not a decimal amount".into()),
    };
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.as_str()),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{raw:?} is not a decimal amount"));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{raw:?} is not a decimal amount"));
    }
    let exp = exponent as usize;
    let (kept, dropped) = if frac.len() > exp {
        frac.split_at(exp)
    } else {
        (frac, "")
    };
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "{raw:?} has more decimals than the currency's {exponent}"
        ));
    }
    let mut text = String::with_capacity(whole.len() + exp);
    text.push_str(whole);
    text.push_str(kept);
    for _ in kept.len()..exp {
        text.push('0');
    }
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{raw:?} is out of range"))?;
    Ok(if negative { -n } else { n })
}

/// A table lookup with case-insensitive keys.
pub fn lookup_ci<'a, V>(table: &'a BTreeMap<String, V>, key: &str) -> Option<&'a V> {
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_mapping_loads() {
        let m = Mapping::built_in().expect("built-in mapping is valid");
        assert!(
            m.shopify
                .purchase_topics
                .contains(&"orders/paid".to_owned())
        );
    }

    #[test]
    fn a_mapping_file_overrides_key_by_key_and_unknown_keys_are_refused() {
        let m = Mapping::parse_over_built_in(
            "[shopify]\ncustomer_id_prefix = \"shop-\"\n[shopify.categories.by_sku_prefix]\n\"TEA-\" = \"daily_goods\"\n",
        )
        .expect("valid");
        assert_eq!(m.shopify.customer_id_prefix, "shop-");
        assert_eq!(m.shopify.customer_id, vec!["customer.id".to_owned()]);
        assert_eq!(m.shopify.money, shopify::Money::Shop);
        let err =
            Mapping::parse_over_built_in("[shopify]\ncustomer_ids = [\"x\"]\n").expect_err("typo");
        assert!(format!("{err:#}").contains("customer_ids"), "{err:#}");
    }

    #[test]
    fn paths_reach_into_objects_and_arrays_and_ids_keep_their_digits() {
        let v: Value = serde_json::from_str(
            r#"{"customer":{"id":115310627314723954},"codes":[{"code":"X"}]}"#,
        )
        .expect("json");
        assert_eq!(
            lookup(&v, "customer.id").and_then(text),
            Some("115310627314723954".to_owned())
        );
        assert_eq!(
            lookup(&v, "codes.0.code").and_then(text),
            Some("X".to_owned())
        );
        assert_eq!(lookup(&v, "codes.1.code"), None);
        assert_eq!(text(&json!("  ")), None);
        assert_eq!(text(&json!(null)), None);
    }

    #[test]
    fn amounts_are_exact_minor_units() {
        assert_eq!(minor_units(&json!("404.95"), 2), Ok(40495));
        assert_eq!(minor_units(&json!("404.9"), 2), Ok(40490));
        assert_eq!(minor_units(&json!("404"), 2), Ok(40400));
        assert_eq!(minor_units(&json!(89.99), 2), Ok(8999));
        assert_eq!(minor_units(&json!("1200"), 0), Ok(1200));
        assert_eq!(minor_units(&json!("1200.00"), 0), Ok(1200));
        assert_eq!(minor_units(&json!("1.234"), 3), Ok(1234));
        assert_eq!(minor_units(&json!("-8.00"), 2), Ok(-800));
        assert!(minor_units(&json!("1200.5"), 0).is_err());
        assert!(minor_units(&json!("1,200"), 2).is_err());
        assert!(minor_units(&json!(".5"), 2).is_err());
        assert!(minor_units(&json!("99999999999999999999"), 2).is_err());
        assert!(minor_units(&json!(null), 2).is_err());
        assert_eq!(currency_exponent("JPY"), 0);
        assert_eq!(currency_exponent("USD"), 2);
        assert_eq!(currency_exponent("KWD"), 3);
    }
}
