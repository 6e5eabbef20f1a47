//! From a decoded wire message to a domain event: parse, don't validate. Every field is checked
//! here, once; the domain receives only values that make sense.

use chrono::{DateTime, Duration, Utc};
use kizuna_proto::v1;

use super::decode::WireEvent;
use crate::domain::event::{
    DomainEvent, EventBody, EventMeta, LineItem, Purchase, Redemption, RedemptionCancel, Refund,
    SurveyAnswer, SurveyScore, TicketPriority, TicketStatus, TicketUpdate,
};
use crate::domain::ids::{CustomerId, EventId, IdError};
use crate::domain::money::{Currency, Minor};
use crate::domain::rejection::{RejectReason, Rejection};

/// The bounds an input must respect. Built from `[ingest]` settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_id_len: usize,
    pub max_amount_minor: i64,
    pub max_future_skew: Duration,
    /// The programme currency; purchases in another currency are refused.
    pub currency: Currency,
    /// Longest free text (survey comment, coupon, sku) kept.
    pub max_text_len: usize,
    pub max_line_items: usize,
    /// The event ledger's retention: older events could no longer be deduplicated, so they
    /// are refused (None: kept forever).
    pub max_age: Option<Duration>,
    /// Events dated before this are refused as nonsense (`ingest.earliest_event_time`; an
    /// unset timestamp decodes to 1970).
    pub earliest: DateTime<Utc>,
}

impl Limits {
    /// The bounds of `[ingest]` and the programme's currency.
    pub fn new(
        settings: &crate::config::Settings,
        programme: &crate::domain::programme::Programme,
    ) -> Self {
        Self {
            max_id_len: settings.ingest.max_id_len,
            max_amount_minor: settings.ingest.max_amount_minor,
            max_future_skew: Duration::seconds(settings.ingest.max_future_skew_secs),
            currency: programme.currency,
            max_text_len: settings.ingest.max_text_len,
            max_line_items: settings.ingest.max_line_items,
            max_age: settings.ledger_retention(),
            earliest: settings.ingest.earliest_event_time,
        }
    }
}

/// Refuses an event older than the ledger retention `max_age` before `reference` (the
/// engine's "now"; for a backfill, its own event-time clock): a resend of it could no longer
/// be deduplicated once the ledger has pruned it.
pub fn check_age(
    occurred_at: DateTime<Utc>,
    max_age: Option<Duration>,
    reference: DateTime<Utc>,
) -> Result<(), Rejection> {
    match max_age {
        Some(max_age) if occurred_at < reference - max_age => Err(Rejection::new(
            RejectReason::TooOld,
            format!(
                "occurred_at {occurred_at} is over ledger.retention_days ({}) before {}: set ledger.retention_days = 0 (keep all) or load it with `kizuna backfill` (judged against its newest event); older events could not be deduplicated",
                max_age.num_days(),
                reference.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        )),
        _ => Ok(()),
    }
}

fn id_rejection(err: IdError, reason: RejectReason) -> Rejection {
    let reason = match err {
        IdError::Empty(_) => RejectReason::MissingField,
        _ => reason,
    };
    Rejection::new(reason, err.to_string())
}

/// What an event is checked against besides its own fields: the message key (when there is
/// one), the limits, and now.
#[derive(Debug, Clone, Copy)]
struct Edge<'a> {
    key: Option<&'a [u8]>,
    limits: &'a Limits,
    now: DateTime<Utc>,
}

fn meta(
    event_id: &str,
    customer_id: &str,
    occurred_at: Option<&kizuna_proto::Timestamp>,
    edge: Edge,
) -> Result<EventMeta, Rejection> {
    let Edge { key, limits, now } = edge;
    let event_id = EventId::parse(event_id, limits.max_id_len)
        .map_err(|e| id_rejection(e, RejectReason::InvalidId))?;
    let customer_id = CustomerId::parse(customer_id, limits.max_id_len)
        .map_err(|e| id_rejection(e, RejectReason::InvalidCustomerId))?;
    if let Some(key) = key
        && key != customer_id.as_str().as_bytes()
    {
        return Err(Rejection::new(
            RejectReason::KeyMismatch,
            "the message key is not the event's customer_id",
        ));
    }
    let ts = occurred_at
        .ok_or_else(|| Rejection::new(RejectReason::MissingField, "occurred_at is missing"))?;
    let nanos = u32::try_from(ts.nanos).map_err(|_| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            "occurred_at has negative nanos",
        )
    })?;
    let occurred_at = DateTime::<Utc>::from_timestamp(ts.seconds, nanos).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            "occurred_at is out of range",
        )
    })?;
    if occurred_at > now + limits.max_future_skew {
        return Err(Rejection::new(
            RejectReason::FutureTimestamp,
            format!(
                "occurred_at {occurred_at} is more than {}s in the future",
                limits.max_future_skew.num_seconds()
            ),
        ));
    }
    if occurred_at < limits.earliest {
        return Err(Rejection::new(
            RejectReason::InvalidTimestamp,
            format!(
                "occurred_at {occurred_at} is before ingest.earliest_event_time ({}): set it earlier (KIZUNA_INGEST__EARLIEST_EVENT_TIME) to accept older history",
                limits.earliest
            ),
        ));
    }
    check_age(occurred_at, limits.max_age, now)?;
    Ok(EventMeta {
        event_id,
        customer_id,
        occurred_at,
    })
}

fn amount(value: i64, field: &str, limits: &Limits) -> Result<Minor, Rejection> {
    Minor::parse(value, limits.max_amount_minor)
        .map_err(|e| Rejection::new(RejectReason::AmountOutOfRange, format!("{field}: {e}")))
}

fn text(value: &str, field: &str, limits: &Limits) -> Result<String, Rejection> {
    if value.len() > limits.max_text_len {
        return Err(Rejection::new(
            RejectReason::InvalidField,
            format!(
                "{field} is {} bytes long, the limit is {}",
                value.len(),
                limits.max_text_len
            ),
        ));
    }
    Ok(value.to_owned())
}

fn non_empty(value: &str, field: &str, limits: &Limits) -> Result<String, Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::new(
            RejectReason::MissingField,
            format!("{field} is missing"),
        ));
    }
    text(value, field, limits)
}

fn currency(raw: &str, limits: &Limits) -> Result<Currency, Rejection> {
    let c = Currency::parse(raw)
        .map_err(|e| Rejection::new(RejectReason::InvalidCurrency, e.to_string()))?;
    if c != limits.currency {
        return Err(Rejection::new(
            RejectReason::CurrencyMismatch,
            format!(
                "currency {c} is not the programme currency {}",
                limits.currency
            ),
        ));
    }
    Ok(c)
}

fn enum_value<E: TryFrom<i32>>(raw: i32, field: &str) -> Result<E, Rejection> {
    E::try_from(raw).map_err(|_| {
        Rejection::new(
            RejectReason::UnknownEnum,
            format!("{field} {raw} is not a known value"),
        )
    })
}

fn purchase(p: &v1::Purchase, edge: Edge) -> Result<DomainEvent, Rejection> {
    let meta = meta(&p.event_id, &p.customer_id, p.occurred_at.as_ref(), edge)?;
    let limits = edge.limits;
    let order_id = non_empty(&p.order_id, "order_id", limits)?;
    let amount_minor = amount(p.amount_minor, "amount_minor", limits)?;
    let currency = currency(&p.currency, limits)?;
    let kind: v1::PurchaseKind = enum_value(p.kind, "kind")?;
    let body = match kind {
        v1::PurchaseKind::Unspecified => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "kind is missing",
            ));
        }
        v1::PurchaseKind::Refund => EventBody::Refund(Refund {
            order_id,
            amount: amount_minor,
            currency,
        }),
        v1::PurchaseKind::Purchase => {
            if p.line_items.len() > limits.max_line_items {
                return Err(Rejection::new(
                    RejectReason::InvalidField,
                    format!(
                        "{} line items, the limit is {}",
                        p.line_items.len(),
                        limits.max_line_items
                    ),
                ));
            }
            let line_items = p
                .line_items
                .iter()
                .map(|li| {
                    Ok(LineItem {
                        sku: text(&li.sku, "line_items.sku", limits)?,
                        category: text(&li.category, "line_items.category", limits)?,
                        quantity: li.quantity,
                        unit_price: amount(
                            li.unit_price_minor,
                            "line_items.unit_price_minor",
                            limits,
                        )?,
                    })
                })
                .collect::<Result<Vec<_>, Rejection>>()?;
            let referred_by = if p.referred_by.is_empty() {
                None
            } else {
                let referrer =
                    CustomerId::parse(&p.referred_by, limits.max_id_len).map_err(|e| {
                        Rejection::new(RejectReason::InvalidCustomerId, format!("referred_by: {e}"))
                    })?;
                (referrer != meta.customer_id).then_some(referrer)
            };
            EventBody::Purchase(Purchase {
                order_id,
                amount: amount_minor,
                currency,
                discount: amount(p.discount_minor, "discount_minor", limits)?,
                coupon_code: (!p.coupon_code.is_empty())
                    .then(|| text(&p.coupon_code, "coupon_code", limits))
                    .transpose()?,
                channel: text(&p.channel, "channel", limits)?,
                line_items,
                referred_by,
            })
        }
    };
    Ok(DomainEvent { meta, body })
}

fn ticket(t: &v1::SupportTicket, edge: Edge) -> Result<DomainEvent, Rejection> {
    let meta = meta(&t.event_id, &t.customer_id, t.occurred_at.as_ref(), edge)?;
    let limits = edge.limits;
    let status = match enum_value::<v1::TicketStatus>(t.status, "status")? {
        v1::TicketStatus::Unspecified => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "status is missing",
            ));
        }
        v1::TicketStatus::Opened => TicketStatus::Opened,
        v1::TicketStatus::Updated => TicketStatus::Updated,
        v1::TicketStatus::Resolved => TicketStatus::Resolved,
        v1::TicketStatus::Reopened => TicketStatus::Reopened,
        v1::TicketStatus::Closed => TicketStatus::Closed,
    };
    let priority = match enum_value::<v1::TicketPriority>(t.priority, "priority")? {
        v1::TicketPriority::Unspecified => TicketPriority::Unspecified,
        v1::TicketPriority::Low => TicketPriority::Low,
        v1::TicketPriority::Normal => TicketPriority::Normal,
        v1::TicketPriority::High => TicketPriority::High,
        v1::TicketPriority::Urgent => TicketPriority::Urgent,
    };
    let csat = match t.csat {
        None => None,
        Some(v @ 1..=5) => Some(v as u8),
        Some(v) => {
            return Err(Rejection::new(
                RejectReason::ScoreOutOfRange,
                format!("csat {v} is not in 1..=5"),
            ));
        }
    };
    let sentiment = match t.sentiment {
        None => None,
        Some(v) if v.is_finite() && (-1.0..=1.0).contains(&v) => Some(v),
        Some(v) => {
            return Err(Rejection::new(
                RejectReason::ScoreOutOfRange,
                format!("sentiment {v} is not in -1..=1"),
            ));
        }
    };
    Ok(DomainEvent {
        meta,
        body: EventBody::Ticket(TicketUpdate {
            ticket_id: non_empty(&t.ticket_id, "ticket_id", limits)?,
            status,
            priority,
            channel: text(&t.channel, "channel", limits)?,
            category: text(&t.category, "category", limits)?,
            escalated: t.escalated,
            sla_breached: t.sla_breached,
            csat,
            sentiment,
        }),
    })
}

fn survey(s: &v1::SurveyResponse, edge: Edge) -> Result<DomainEvent, Rejection> {
    let meta = meta(&s.event_id, &s.customer_id, s.occurred_at.as_ref(), edge)?;
    let limits = edge.limits;
    let (score, range) = match enum_value::<v1::SurveyKind>(s.kind, "kind")? {
        v1::SurveyKind::Unspecified => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "kind is missing",
            ));
        }
        v1::SurveyKind::Nps => (SurveyScore::Nps as fn(u8) -> SurveyScore, 0..=10),
        v1::SurveyKind::Csat => (SurveyScore::Csat as fn(u8) -> SurveyScore, 1..=5),
        v1::SurveyKind::Ces => (SurveyScore::Ces as fn(u8) -> SurveyScore, 1..=7),
    };
    if !range.contains(&s.score) {
        return Err(Rejection::new(
            RejectReason::ScoreOutOfRange,
            format!(
                "score {} is not in {}..={}",
                s.score,
                range.start(),
                range.end()
            ),
        ));
    }
    let comment = match &s.comment {
        Some(c) if c.len() > limits.max_text_len * 16 => {
            return Err(Rejection::new(
                RejectReason::InvalidField,
                "comment is too long",
            ));
        }
        other => other.clone(),
    };
    Ok(DomainEvent {
        meta,
        body: EventBody::Survey(SurveyAnswer {
            survey_id: non_empty(&s.survey_id, "survey_id", limits)?,
            score: score(s.score as u8),
            comment,
        }),
    })
}

/// A redemption (or its cancel) from the `redemptions` topic. Whether the points are there,
/// the reward exists and the tier may redeem it is the points book's decision, not the edge's.
fn redemption(r: &v1::Redemption, edge: Edge) -> Result<DomainEvent, Rejection> {
    let meta = meta(&r.event_id, &r.customer_id, r.occurred_at.as_ref(), edge)?;
    let limits = edge.limits;
    let redemption_id = EventId::parse(&r.redemption_id, limits.max_id_len)
        .map_err(|e| {
            let reason = match e {
                IdError::Empty(_) => RejectReason::MissingField,
                _ => RejectReason::InvalidId,
            };
            Rejection::new(reason, format!("redemption_id: {e}"))
        })?
        .as_str()
        .to_owned();
    let body = match enum_value::<v1::RedemptionKind>(r.kind, "kind")? {
        v1::RedemptionKind::Unspecified => {
            return Err(Rejection::new(
                RejectReason::MissingField,
                "kind is missing",
            ));
        }
        v1::RedemptionKind::Redeem => {
            if r.points <= 0 || r.points > limits.max_amount_minor {
                return Err(Rejection::new(
                    RejectReason::AmountOutOfRange,
                    format!(
                        "points {} is not in 1..={}",
                        r.points, limits.max_amount_minor
                    ),
                ));
            }
            let reward = (!r.reward.is_empty())
                .then(|| non_empty(&r.reward, "reward", limits))
                .transpose()?;
            EventBody::Redemption(Redemption {
                redemption_id,
                points: r.points,
                reward,
            })
        }
        v1::RedemptionKind::Cancel => {
            EventBody::RedemptionCancel(RedemptionCancel { redemption_id })
        }
    };
    Ok(DomainEvent { meta, body })
}

/// Validates a wire event. `key` is the Kafka message key when there is one; it must equal the
/// customer id.
pub fn validate(
    event: &WireEvent,
    key: Option<&[u8]>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<DomainEvent, Rejection> {
    let edge = Edge { key, limits, now };
    match event {
        WireEvent::Purchase(p) => purchase(p, edge),
        WireEvent::SupportTicket(t) => ticket(t, edge),
        WireEvent::Survey(s) => survey(s, edge),
        WireEvent::Redemption(r) => redemption(r, edge),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
