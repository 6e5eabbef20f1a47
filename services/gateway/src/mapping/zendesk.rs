//! Zendesk ticket events (and the satisfaction-rating template) → kizuna.v1 `SupportTicket`.
//!
//! Zendesk's event-subscribed webhooks send an envelope: `type` (`zen:event-type:ticket.…`), `id`
//! (the event id), `time`, `detail` (the ticket: id, requester_id, status, priority, tags, via,
//! type, updated_at) and `event` (what changed: `current`, `previous`). The satisfaction template
//! of the README uses the same envelope with type `kizuna:ticket.satisfaction_rated` and the
//! rating in `event.current`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kizuna::inputs::decode::WireEvent;
use kizuna_proto::v1;
use serde::Deserialize;
use serde_json::Value;

use super::{Draft, MapError, Mapped, customer_id, first_time, lookup, lookup_ci, text, timestamp};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskMapping {
    pub events: Vec<String>,
    pub customer_id: Vec<String>,
    pub customer_id_prefix: String,
    pub occurred_at: Vec<String>,
    pub escalation_tags: Vec<String>,
    pub sla_breach_tags: Vec<String>,
    pub statuses: BTreeMap<String, Status>,
    pub satisfaction: Satisfaction,
}

/// kizuna.v1 ticket statuses a Zendesk status can map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Opened,
    Updated,
    Resolved,
    Closed,
}

impl Status {
    fn proto(self) -> v1::TicketStatus {
        match self {
            Status::Opened => v1::TicketStatus::Opened,
            Status::Updated => v1::TicketStatus::Updated,
            Status::Resolved => v1::TicketStatus::Resolved,
            Status::Closed => v1::TicketStatus::Closed,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Satisfaction {
    pub good: u32,
    pub bad: u32,
}

impl ZendeskMapping {
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("good", self.satisfaction.good),
            ("bad", self.satisfaction.bad),
        ] {
            if !(1..=5).contains(&v) {
                anyhow::bail!(
                    "zendesk.satisfaction.{name} must be a CSAT between 1 and 5, not {v}"
                );
            }
        }
        Ok(())
    }
}

const EVENT_PREFIX: &str = "zen:event-type:";
/// The `type` of the satisfaction-rating template (README).
pub const SATISFACTION_TYPE: &str = "kizuna:ticket.satisfaction_rated";

/// Statuses a ticket is back from when it is reopened.
fn is_done(status: &str) -> bool {
    status.eq_ignore_ascii_case("solved") || status.eq_ignore_ascii_case("closed")
}

fn has_tag(detail: &Value, tags: &[String]) -> bool {
    lookup(detail, "tags")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .any(|tag| tags.iter().any(|x| x.eq_ignore_ascii_case(tag)))
        })
}

fn priority(detail: &Value) -> v1::TicketPriority {
    match lookup(detail, "priority")
        .and_then(text)
        .map(|p| p.to_ascii_lowercase())
        .as_deref()
    {
        Some("low") => v1::TicketPriority::Low,
        Some("normal") => v1::TicketPriority::Normal,
        Some("high") => v1::TicketPriority::High,
        Some("urgent") => v1::TicketPriority::Urgent,
        _ => v1::TicketPriority::Unspecified,
    }
}

/// The status `raw` maps to, or the error naming `field`.
fn mapped_status(m: &ZendeskMapping, raw: &str, field: &str) -> Result<Status, MapError> {
    lookup_ci(&m.statuses, raw).copied().ok_or_else(|| {
        MapError::new(
            field,
            "invalid_field",
            format!(
                "{field} {:?} is not a status of zendesk.statuses",
                raw.chars().take(32).collect::<String>()
            ),
        )
    })
}

/// A satisfaction rating as a CSAT (1–5): good/bad by the mapping, numbers as they are; None
/// for "offered"/"unoffered" (no answer yet).
fn csat(m: &ZendeskMapping, raw: &str) -> Result<Option<u32>, MapError> {
    let r = raw.trim().to_ascii_lowercase();
    if r.starts_with("good") {
        return Ok(Some(m.satisfaction.good));
    }
    if r.starts_with("bad") {
        return Ok(Some(m.satisfaction.bad));
    }
    if r.is_empty() || r.starts_with("offered") || r.starts_with("unoffered") {
        return Ok(None);
    }
    r.parse::<u32>().map(Some).map_err(|_| {
        MapError::new(
            "event.current",
            "invalid_field",
            "event.current is not a satisfaction rating (good, bad, or 1–5)",
        )
    })
}

/// Maps one Zendesk delivery. `signed_at` is the signature timestamp, the time of last resort.
pub fn map(
    body: &Value,
    m: &ZendeskMapping,
    signed_at: Option<DateTime<Utc>>,
) -> Result<Mapped, MapError> {
    let kind = lookup(body, "type")
        .and_then(text)
        .ok_or_else(|| MapError::missing("type"))?;
    let satisfaction = kind == SATISFACTION_TYPE;
    let short = kind.strip_prefix(EVENT_PREFIX).unwrap_or(&kind);
    if !satisfaction && !m.events.iter().any(|e| e == short) {
        return Ok(Mapped::Ignored(format!(
            "event type {:?} is not in zendesk.events",
            kind.chars().take(80).collect::<String>()
        )));
    }
    let detail = lookup(body, "detail").ok_or_else(|| MapError::missing("detail"))?;
    let (customer, customer_path) = customer_id(body, &m.customer_id, &m.customer_id_prefix)?;
    let ticket_id = lookup(detail, "id")
        .and_then(text)
        .ok_or_else(|| MapError::missing("detail.id"))?;
    let (occurred, occurred_path) = match first_time(body, &m.occurred_at)? {
        Some((t, p)) => (t, p),
        None => (
            signed_at.ok_or_else(|| {
                MapError::missing(m.occurred_at.first().cloned().unwrap_or_default())
            })?,
            crate::signature::ZENDESK_TIMESTAMP_HEADER.to_owned(),
        ),
    };
    let current = lookup(body, "event.current").and_then(text);
    let previous = lookup(body, "event.previous").and_then(text);
    let detail_status = lookup(detail, "status").and_then(text);
    let mut csat_value = None;
    let status = match short {
        "ticket.created" => v1::TicketStatus::Opened,
        "ticket.status_changed" => {
            let cur = current
                .clone()
                .ok_or_else(|| MapError::missing("event.current"))?;
            let reopened = previous.as_deref().is_some_and(is_done) && !is_done(&cur);
            if reopened {
                v1::TicketStatus::Reopened
            } else {
                mapped_status(m, &cur, "event.current")?.proto()
            }
        }
        _ => {
            if satisfaction {
                let rating = current.clone().unwrap_or_default();
                csat_value = csat(m, &rating)?;
                if csat_value.is_none() {
                    return Ok(Mapped::Ignored(
                        "the satisfaction survey has no answer yet".into(),
                    ));
                }
            }
            // Any other change: the ticket's current status, never "opened" again.
            match detail_status
                .as_deref()
                .map(|s| mapped_status(m, s, "detail.status"))
                .transpose()?
            {
                Some(Status::Resolved) => v1::TicketStatus::Resolved,
                Some(Status::Closed) => v1::TicketStatus::Closed,
                _ => v1::TicketStatus::Updated,
            }
        }
    };
    let ticket = v1::SupportTicket {
        event_id: String::new(),
        customer_id: customer,
        occurred_at: Some(timestamp(occurred)),
        ticket_id,
        status: status as i32,
        priority: priority(detail) as i32,
        channel: lookup(detail, "via.channel")
            .and_then(text)
            .unwrap_or_default(),
        category: lookup(detail, "type")
            .and_then(text)
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_default(),
        escalated: has_tag(detail, &m.escalation_tags),
        sla_breached: has_tag(detail, &m.sla_breach_tags),
        csat: csat_value,
        sentiment: None,
    };
    Ok(Mapped::Events(vec![
        Draft::new(WireEvent::SupportTicket(ticket), "ticket")
            .from("customer_id", customer_path)
            .from("ticket_id", "detail.id")
            .from("occurred_at", occurred_path)
            .from("status", "event.current")
            .from("csat", "event.current")
            .from("channel", "detail.via.channel")
            .from("category", "detail.type"),
    ]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::Mapping;

    fn m() -> ZendeskMapping {
        Mapping::built_in().expect("built-in").zendesk
    }

    fn ticket(mapped: Mapped) -> v1::SupportTicket {
        match mapped {
            Mapped::Events(mut d) if d.len() == 1 => match d.remove(0).event {
                WireEvent::SupportTicket(t) => t,
                other => panic!("not a ticket: {other:?}"),
            },
            other => panic!("not one event: {other:?}"),
        }
    }

    fn envelope(kind: &str, event: Value) -> Value {
        json!({
            "type": kind, "id": "ev-1", "time": "2025-01-08T10:12:07.672717030Z",
            "detail": {"id": "5158", "requester_id": "8447388090494", "status": "OPEN",
                       "priority": "HIGH", "type": "INCIDENT", "via": {"channel": "web_service"},
                       "tags": ["vip", "Escalated"]},
            "event": event
        })
    }

    #[test]
    fn status_changes_map_and_a_solved_ticket_coming_back_is_reopened() {
        let t = ticket(
            map(
                &envelope(
                    "zen:event-type:ticket.status_changed",
                    json!({"current": "SOLVED", "previous": "OPEN"}),
                ),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.status(), v1::TicketStatus::Resolved);
        assert_eq!(t.priority(), v1::TicketPriority::High);
        assert_eq!(
            (t.customer_id.as_str(), t.ticket_id.as_str()),
            ("8447388090494", "5158")
        );
        assert_eq!(
            (t.channel.as_str(), t.category.as_str()),
            ("web_service", "incident")
        );
        assert!(t.escalated && !t.sla_breached);
        let t = ticket(
            map(
                &envelope(
                    "zen:event-type:ticket.status_changed",
                    json!({"current": "OPEN", "previous": "SOLVED"}),
                ),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.status(), v1::TicketStatus::Reopened);
        let t = ticket(
            map(
                &envelope("zen:event-type:ticket.created", json!({})),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.status(), v1::TicketStatus::Opened);
        let t = ticket(
            map(
                &envelope(
                    "zen:event-type:ticket.priority_changed",
                    json!({"current": "HIGH"}),
                ),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.status(), v1::TicketStatus::Updated);
    }

    #[test]
    fn satisfaction_ratings_become_csat() {
        let t = ticket(
            map(
                &envelope(
                    SATISFACTION_TYPE,
                    json!({"current": "Bad, I'm unsatisfied"}),
                ),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.csat, Some(1));
        let t = ticket(
            map(
                &envelope(SATISFACTION_TYPE, json!({"current": "good"})),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.csat, Some(5));
        let t = ticket(
            map(
                &envelope(SATISFACTION_TYPE, json!({"current": "4"})),
                &m(),
                None,
            )
            .expect("maps"),
        );
        assert_eq!(t.csat, Some(4));
        assert!(matches!(
            map(
                &envelope(SATISFACTION_TYPE, json!({"current": "offered"})),
                &m(),
                None
            ),
            Ok(Mapped::Ignored(_))
        ));
        let err = map(
            &envelope(SATISFACTION_TYPE, json!({"current": "meh"})),
            &m(),
            None,
        )
        .expect_err("not a rating");
        assert_eq!(err.field, "event.current");
    }

    #[test]
    fn other_events_are_ignored_and_gaps_are_named() {
        assert!(matches!(
            map(
                &envelope("zen:event-type:ticket.comment_added", json!({})),
                &m(),
                None
            ),
            Ok(Mapped::Ignored(_))
        ));
        let mut no_requester = envelope("zen:event-type:ticket.created", json!({}));
        no_requester["detail"]["requester_id"] = Value::Null;
        let err = map(&no_requester, &m(), None).expect_err("no customer");
        assert_eq!(err.field, "detail.requester_id");
        let err = map(
            &envelope(
                "zen:event-type:ticket.status_changed",
                json!({"current": "ARCHIVED"}),
            ),
            &m(),
            None,
        )
        .expect_err("unknown status");
        assert_eq!(
            (err.field.as_str(), err.reason),
            ("event.current", "invalid_field")
        );
        let mut untimed = envelope("zen:event-type:ticket.created", json!({}));
        untimed["time"] = Value::Null;
        let signed = DateTime::parse_from_rfc3339("2025-01-08T10:12:08Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let t = ticket(map(&untimed, &m(), signed).expect("falls back to the signature time"));
        assert_eq!(
            t.occurred_at.map(|x| x.seconds),
            signed.map(|s| s.timestamp())
        );
    }
}
