//! What a subscription asks for, parsed once at the edge: the URL, the event types and the
//! filter. Past the admin API, an invalid subscription cannot be represented.

use std::net::IpAddr;

use kizuna_proto::ce_type;
use serde::{Deserialize, Serialize};

use crate::event::OutputEvent;

/// The event types a subscription can ask for: the engine's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    TierChanged,
    TierWillDowngrade,
    ChurnRiskChanged,
    SegmentChanged,
    PointsChanged,
    PointsWillExpire,
    /// The receipt of an erasure; its subject is the erased id's keyed hash.
    CustomerErased,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::TierChanged,
        EventType::TierWillDowngrade,
        EventType::ChurnRiskChanged,
        EventType::SegmentChanged,
        EventType::PointsChanged,
        EventType::PointsWillExpire,
        EventType::CustomerErased,
    ];

    /// The CloudEvents `type` (`ce_type` on Kafka).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TierChanged => ce_type::TIER_CHANGED,
            EventType::TierWillDowngrade => ce_type::TIER_WILL_DOWNGRADE,
            EventType::ChurnRiskChanged => ce_type::CHURN_RISK_CHANGED,
            EventType::SegmentChanged => ce_type::SEGMENT_CHANGED,
            EventType::PointsChanged => ce_type::POINTS_CHANGED,
            EventType::PointsWillExpire => ce_type::POINTS_WILL_EXPIRE,
            EventType::CustomerErased => ce_type::CUSTOMER_ERASED,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Which events of the chosen types a subscription wants. Every list that is set must match
/// (an event type a list does not apply to passes it); an empty filter passes everything.
///
/// - `churn_levels`: a `ChurnRiskChanged` passes when its new level is listed
///   (`high`, or the contract's `CHURN_LEVEL_HIGH`).
/// - `tiers`: a `TierChanged` or `TierWillDowngrade` passes when it moves to or from a listed
///   tier (names from the programme, e.g. `gold`).
/// - `segments`: a `SegmentChanged` passes when it moves to or from a listed segment
///   (`hostage`, or `SEGMENT_HOSTAGE`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// ChurnRiskChanged only: deliver these levels (`high` or `CHURN_LEVEL_HIGH`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn_levels: Option<Vec<String>>,
    /// TierChanged and TierWillDowngrade only: deliver changes to or from these tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    /// SegmentChanged only: deliver changes to or from these segments (`hostage`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Vec<String>>,
}

const CHURN_LEVELS: [&str; 3] = ["CHURN_LEVEL_LOW", "CHURN_LEVEL_MEDIUM", "CHURN_LEVEL_HIGH"];
const SEGMENTS: [&str; 6] = [
    "SEGMENT_NEUTRAL",
    "SEGMENT_LOYAL",
    "SEGMENT_ANGEL",
    "SEGMENT_HOSTAGE",
    "SEGMENT_REBEL",
    "SEGMENT_HIGH_VALUE_NOT_LOYAL",
];

/// Why a subscription was refused; `field` names what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// `low` or `CHURN_LEVEL_LOW` → `CHURN_LEVEL_LOW`, as the contract's JSON spells it.
fn canonical(value: &str, prefix: &str, known: &[&str]) -> Option<String> {
    let upper = value.trim().to_ascii_uppercase();
    let full = if upper.starts_with(prefix) {
        upper
    } else {
        format!("{prefix}{upper}")
    };
    known.contains(&full.as_str()).then_some(full)
}

impl Filter {
    /// Checks and normalises the lists (enum names as the contract's JSON spells them).
    pub fn parse(self) -> Result<Filter, Invalid> {
        let churn_levels = match self.churn_levels {
            None => None,
            Some(levels) => Some(
                levels
                    .iter()
                    .map(|l| {
                        canonical(l, "CHURN_LEVEL_", &CHURN_LEVELS).ok_or_else(|| {
                            invalid(
                                "filter.churn_levels",
                                format!("unknown churn level {l:?}; use low, medium or high"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let segments = match self.segments {
            None => None,
            Some(segments) => Some(
                segments
                    .iter()
                    .map(|s| {
                        canonical(s, "SEGMENT_", &SEGMENTS).ok_or_else(|| {
                            invalid("filter.segments", format!("unknown segment {s:?}; use one of neutral, loyal, angel, hostage, rebel, high_value_not_loyal"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let tiers = match self.tiers {
            None => None,
            Some(tiers) => {
                if tiers.iter().any(|t| t.trim().is_empty() || t.len() > 128) {
                    return Err(invalid(
                        "filter.tiers",
                        "tier names are 1 to 128 characters",
                    ));
                }
                Some(tiers)
            }
        };
        for (field, list) in [
            ("filter.churn_levels", churn_levels.as_ref().map(Vec::len)),
            ("filter.tiers", tiers.as_ref().map(Vec::len)),
            ("filter.segments", segments.as_ref().map(Vec::len)),
        ] {
            if list == Some(0) {
                return Err(invalid(
                    field,
                    "an empty list would match nothing; leave it out to match everything",
                ));
            }
        }
        Ok(Filter {
            churn_levels,
            tiers,
            segments,
        })
    }

    /// Whether the event passes. Only fields of the contract are read (no free text).
    pub fn matches(&self, event: &OutputEvent) -> bool {
        let data = &event.data;
        let field = |name: &str| data.get(name).and_then(|v| v.as_str()).unwrap_or("");
        match event.event_type {
            EventType::ChurnRiskChanged => self
                .churn_levels
                .as_ref()
                .is_none_or(|levels| levels.iter().any(|l| l == field("newLevel"))),
            EventType::TierChanged | EventType::TierWillDowngrade => {
                self.tiers.as_ref().is_none_or(|tiers| {
                    tiers
                        .iter()
                        .any(|t| t == field("previousTier") || t == field("newTier"))
                })
            }
            EventType::SegmentChanged => self.segments.as_ref().is_none_or(|segments| {
                segments
                    .iter()
                    .any(|s| s == field("previousSegment") || s == field("newSegment"))
            }),
            // No filter applies to points events: a subscription to them gets them all.
            // Nor to erasure receipts: a subscriber to them must get every one.
            EventType::PointsChanged | EventType::PointsWillExpire | EventType::CustomerErased => {
                true
            }
        }
    }
}

/// Parses the event types of a subscription: at least one, each known, no repeats.
pub fn parse_event_types(types: &[String]) -> Result<Vec<EventType>, Invalid> {
    if types.is_empty() {
        return Err(invalid(
            "event_types",
            format!(
                "name at least one of {}",
                EventType::ALL.map(EventType::as_str).join(", ")
            ),
        ));
    }
    let mut parsed = Vec::with_capacity(types.len());
    for t in types {
        let Some(ty) = EventType::parse(t) else {
            return Err(invalid(
                "event_types",
                format!(
                    "unknown event type {t:?}; known: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            ));
        };
        if !parsed.contains(&ty) {
            parsed.push(ty);
        }
    }
    parsed.sort();
    Ok(parsed)
}

/// Parses a subscription URL: http or https, a host, no credentials in the authority, at most
/// 2,048 characters. Unless private networks are allowed, a literal IP must be public.
pub fn parse_url(text: &str, allow_private: bool) -> Result<reqwest::Url, Invalid> {
    if text.len() > 2048 {
        return Err(invalid("url", "at most 2048 characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url",
            "no credentials in the URL; the signature authenticates deliveries",
        ));
    }
    let Some(host) = url.host() else {
        return Err(invalid("url", "a host is required"));
    };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
                return Err(invalid(
                    "url",
                    "private and loopback addresses are refused (delivery.allow_private_networks)",
                ));
            }
            url::Host::Domain(_) => None,
        };
        if ip.is_some_and(|ip| !is_public(ip)) {
            return Err(invalid(
                "url",
                "private and loopback addresses are refused (delivery.allow_private_networks)",
            ));
        }
    }
    Ok(url)
}

/// Whether an address is reachable on the public internet (not loopback, private,
/// link-local, unspecified, shared, documentation or multicast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Scheme, host and port of a URL: what logs and events may say about an endpoint (paths and
/// queries can carry credentials).
pub fn endpoint(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => "<invalid>".to_owned(),
        },
        Err(_) => "<invalid>".to_owned(),
    }
}

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Events are queued and delivered.
    Active,
    /// Events are queued but not delivered until it is resumed.
    Paused,
    /// Delivery failed for too long (or the receiver said 410 Gone): nothing is queued or
    /// delivered until an operator resumes it.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Status::Active),
            "paused" => Some(Status::Paused),
            "disabled" => Some(Status::Disabled),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(ty: EventType, data: serde_json::Value) -> OutputEvent {
        OutputEvent {
            id: uuid::Uuid::nil(),
            event_type: ty,
            subject: "c".into(),
            time: chrono::Utc::now(),
            data,
        }
    }

    #[test]
    fn churn_high_only() {
        let f = Filter {
            churn_levels: Some(vec!["high".into()]),
            ..Default::default()
        }
        .parse()
        .expect("valid");
        assert_eq!(f.churn_levels, Some(vec!["CHURN_LEVEL_HIGH".to_owned()]));
        let high = event(
            EventType::ChurnRiskChanged,
            json!({"newLevel": "CHURN_LEVEL_HIGH"}),
        );
        let medium = event(
            EventType::ChurnRiskChanged,
            json!({"newLevel": "CHURN_LEVEL_MEDIUM"}),
        );
        assert!(f.matches(&high));
        assert!(!f.matches(&medium));
        // The list does not apply to other types.
        assert!(f.matches(&event(EventType::TierChanged, json!({}))));
    }

    #[test]
    fn tier_changes_to_or_from_gold() {
        let f = Filter {
            tiers: Some(vec!["gold".into()]),
            ..Default::default()
        };
        let tc = |from: &str, to: &str| {
            event(
                EventType::TierChanged,
                json!({"previousTier": from, "newTier": to}),
            )
        };
        assert!(f.matches(&tc("silver", "gold")));
        assert!(f.matches(&tc("gold", "platinum")));
        assert!(!f.matches(&tc("member", "silver")));
    }

    #[test]
    fn points_events_can_be_subscribed_to_and_pass_every_filter() {
        assert_eq!(
            parse_event_types(&[
                "kizuna.v1.PointsWillExpire".into(),
                "kizuna.v1.PointsChanged".into()
            ]),
            Ok(vec![EventType::PointsChanged, EventType::PointsWillExpire])
        );
        let filter = Filter {
            tiers: Some(vec!["gold".into()]),
            segments: Some(vec!["hostage".into()]),
            ..Default::default()
        }
        .parse()
        .expect("valid");
        let event = OutputEvent {
            id: uuid::Uuid::nil(),
            event_type: EventType::PointsChanged,
            subject: "c1".into(),
            time: chrono::Utc::now(),
            data: serde_json::json!({"customerId": "c1", "available": "700"}),
        };
        assert!(filter.matches(&event));
    }

    #[test]
    fn bad_filters_and_types_name_the_field() {
        let err = Filter {
            churn_levels: Some(vec!["extreme".into()]),
            ..Default::default()
        }
        .parse()
        .expect_err("refused");
        assert_eq!(err.field, "filter.churn_levels");
        let err = Filter {
            tiers: Some(vec![]),
            ..Default::default()
        }
        .parse()
        .expect_err("refused");
        assert_eq!(err.field, "filter.tiers");
        assert_eq!(
            parse_event_types(&["kizuna.v1.Nope".into()])
                .expect_err("refused")
                .field,
            "event_types"
        );
        assert_eq!(
            parse_event_types(&[
                "kizuna.v1.SegmentChanged".into(),
                "kizuna.v1.TierChanged".into(),
                "kizuna.v1.TierChanged".into()
            ]),
            Ok(vec![EventType::TierChanged, EventType::SegmentChanged])
        );
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("https://hooks.example.com/k?x=1", false).is_ok());
        assert!(parse_url("ftp://example.com", false).is_err());
        assert!(parse_url("https://user:pw@example.com", false).is_err());
        assert!(parse_url("http://127.0.0.1:9/x", false).is_err());
        assert!(parse_url("http://10.1.2.3/x", false).is_err());
        assert!(parse_url("http://[::1]/x", false).is_err());
        assert!(parse_url("http://localhost/x", false).is_err());
        assert!(parse_url("http://127.0.0.1:9/x", true).is_ok());
        assert_eq!(
            endpoint("https://h.example.com:8443/p?token=s"),
            "https://h.example.com:8443"
        );
    }
}
