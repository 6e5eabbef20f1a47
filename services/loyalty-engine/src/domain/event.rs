//! Validated input events. Built once from the wire types by `inputs::validate`; the domain
//! only ever sees these.

use chrono::{DateTime, Utc};

use super::ids::{CustomerId, EventId};
use super::money::{Currency, Minor};

/// What every input event carries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventMeta {
    pub event_id: EventId,
    pub customer_id: CustomerId,
    pub occurred_at: DateTime<Utc>,
}

/// A validated input event.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DomainEvent {
    pub meta: EventMeta,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    Purchase(Purchase),
    Refund(Refund),
    Ticket(TicketUpdate),
    Survey(SurveyAnswer),
    /// Points spent on a reward (the API or the `redemptions` topic).
    Redemption(Redemption),
    /// An earlier redemption given back.
    RedemptionCancel(RedemptionCancel),
    /// Points granted or taken back by hand (`POST /v1/customers/{id}/points/adjustments`).
    Adjustment(Adjustment),
}

impl EventBody {
    /// A short, PII-free name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Purchase(_) => "purchase",
            EventBody::Refund(_) => "refund",
            EventBody::Ticket(_) => "ticket",
            EventBody::Survey(_) => "survey",
            EventBody::Redemption(_) => "redemption",
            EventBody::RedemptionCancel(_) => "redemption_cancel",
            EventBody::Adjustment(_) => "adjustment",
        }
    }
}

/// Points spent. The redemption id is the client's idempotency key: the same id twice is one
/// redemption.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Redemption {
    pub redemption_id: String,
    pub points: i64,
    /// A reward of the catalogue (its cost must equal `points`), or none for points spent
    /// at the till.
    pub reward: Option<String>,
}

/// Gives back what redemption `redemption_id` took.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RedemptionCancel {
    pub redemption_id: String,
}

/// Points granted (positive) or taken back (negative) by an operator. The adjustment id is
/// the client's idempotency key: the same id twice is one adjustment.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adjustment {
    pub adjustment_id: String,
    /// Non-zero; negative takes points back (never more than are available).
    pub points: i64,
    /// Why, in the operator's words: shown in the points history, never logged.
    pub reason: String,
    /// When granted points expire; `None`: the programme's expiry rules from the grant.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who made it (the `X-Kizuna-Operator` header, or `operator`).
    pub by: String,
}

impl std::fmt::Debug for Adjustment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adjustment")
            .field("adjustment_id", &self.adjustment_id)
            .field("points", &self.points)
            .field("reason", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("by", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub category: String,
    pub quantity: u32,
    pub unit_price: Minor,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Purchase {
    pub order_id: String,
    pub amount: Minor,
    pub currency: Currency,
    pub discount: Minor,
    pub coupon_code: Option<String>,
    pub channel: String,
    pub line_items: Vec<LineItem>,
    pub referred_by: Option<CustomerId>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    /// The order this refund reverses (in part or in full).
    pub order_id: String,
    pub amount: Minor,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Opened,
    Updated,
    Resolved,
    Reopened,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Unspecified,
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TicketUpdate {
    pub ticket_id: String,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub channel: String,
    pub category: String,
    pub escalated: bool,
    pub sla_breached: bool,
    /// Post-ticket satisfaction, 1..=5.
    pub csat: Option<u8>,
    /// Conversation sentiment, -1..=1.
    pub sentiment: Option<f64>,
}

/// A survey score, range-checked for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "score", rename_all = "snake_case")]
pub enum SurveyScore {
    /// 0..=10
    Nps(u8),
    /// 1..=5
    Csat(u8),
    /// 1..=7, lower is better
    Ces(u8),
}

impl SurveyScore {
    /// 0 for NPS, 1 for CSAT, 2 for CES.
    pub fn kind_index(&self) -> usize {
        match self {
            SurveyScore::Nps(_) => 0,
            SurveyScore::Csat(_) => 1,
            SurveyScore::Ces(_) => 2,
        }
    }
}

#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SurveyAnswer {
    pub survey_id: String,
    pub score: SurveyScore,
    /// Free text from the customer: stored for the timeline, never logged.
    pub comment: Option<String>,
}

impl std::fmt::Debug for SurveyAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveyAnswer")
            .field("survey_id", &self.survey_id)
            .field("score", &self.score)
            .field("comment", &self.comment.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_comments_never_show_in_debug_output() {
        let answer = SurveyAnswer {
            survey_id: "s".into(),
            score: SurveyScore::Nps(3),
            comment: Some("my address is 1-2-3 Shibuya".into()),
        };
        let printed = format!("{answer:?}");
        assert!(!printed.contains("Shibuya"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn adjustment_reasons_never_show_in_debug_output() {
        let body = EventBody::Adjustment(Adjustment {
            adjustment_id: "k1".into(),
            points: 500,
            reason: "parcel late to 1-2-3 Shibuya".into(),
            expires_at: None,
            by: "tanaka".into(),
        });
        let printed = format!("{body:?}");
        assert!(!printed.contains("Shibuya"), "{printed}");
        assert!(!printed.contains("tanaka"), "{printed}");
        assert!(printed.contains("500"), "{printed}");
    }

    /// Ledger bodies are MessagePack (`store::ledger`): the new variant round-trips, and the
    /// encoding of the variants stored before it is unchanged (the tag names them).
    #[test]
    fn adjustments_round_trip_in_the_ledger_encoding_and_older_bodies_still_decode() {
        let meta = EventMeta {
            event_id: EventId::parse("adjustment:k1", 128).expect("id"),
            customer_id: CustomerId::parse("c1", 128).expect("id"),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        };
        let adjusted = DomainEvent {
            meta: meta.clone(),
            body: EventBody::Adjustment(Adjustment {
                adjustment_id: "k1".into(),
                points: -20,
                reason: "granted twice".into(),
                expires_at: DateTime::from_timestamp(1_800_000_000, 0),
                by: "ops".into(),
            }),
        };
        let bytes = rmp_serde::to_vec_named(&adjusted).expect("encode");
        let back: DomainEvent = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, adjusted);

        // A redemption as it was written before adjustments existed: a map of its fields,
        // tagged `type = "redemption"`.
        #[derive(serde::Serialize)]
        struct OldRedemption<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            redemption_id: &'a str,
            points: i64,
            reward: Option<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct OldEvent<'a> {
            meta: &'a EventMeta,
            body: OldRedemption<'a>,
        }
        let old = rmp_serde::to_vec_named(&OldEvent {
            meta: &meta,
            body: OldRedemption {
                kind: "redemption",
                redemption_id: "r1",
                points: 30,
                reward: None,
            },
        })
        .expect("encode");
        let decoded: DomainEvent = rmp_serde::from_slice(&old).expect("an old body decodes");
        assert_eq!(
            decoded.body,
            EventBody::Redemption(Redemption {
                redemption_id: "r1".into(),
                points: 30,
                reward: None,
            })
        );
    }
}
