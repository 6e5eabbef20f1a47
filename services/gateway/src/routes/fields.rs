//! The payload field a validation refusal is about, as the client spelled it.

use kizuna::domain::rejection::{RejectReason, Rejection};
use kizuna::inputs::decode::WireEvent;

use crate::api::Source;
use crate::mapping::Draft;

/// Fields of the kizuna.v1 input messages, as the engine's refusals name them.
const KIZUNA_FIELDS: [&str; 24] = [
    "event_id",
    "customer_id",
    "occurred_at",
    "order_id",
    "kind",
    "amount_minor",
    "currency",
    "line_items",
    "line_items.sku",
    "line_items.category",
    "line_items.unit_price_minor",
    "discount_minor",
    "coupon_code",
    "channel",
    "referred_by",
    "ticket_id",
    "status",
    "priority",
    "category",
    "csat",
    "sentiment",
    "survey_id",
    "score",
    "comment",
];

/// The kizuna.v1 field a refusal is about: the first word of its detail when that is a field
/// name, else the field its reason is always about.
fn kizuna_field(r: &Rejection) -> &str {
    let first = r.detail.split([' ', ':']).next().unwrap_or_default();
    if let Some(field) = KIZUNA_FIELDS.iter().find(|f| **f == first) {
        return field;
    }
    match r.reason {
        RejectReason::InvalidId => "event_id",
        RejectReason::InvalidCustomerId | RejectReason::KeyMismatch => "customer_id",
        RejectReason::FutureTimestamp | RejectReason::InvalidTimestamp | RejectReason::TooOld => {
            "occurred_at"
        }
        RejectReason::CurrencyMismatch | RejectReason::InvalidCurrency => "currency",
        RejectReason::AmountOutOfRange => "amount_minor",
        RejectReason::ScoreOutOfRange => "score",
        _ => "body",
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The payload field a validation refusal names: where the mapping took the value from, or for
/// Kizuna's own JSON the field's JSON name.
pub(super) fn rejected_field(source: Source, draft: &Draft, r: &Rejection) -> String {
    let field = kizuna_field(r);
    if source == Source::Kizuna {
        let message = match &draft.event {
            WireEvent::Purchase(_) => "purchase",
            WireEvent::SupportTicket(_) => "supportTicket",
            WireEvent::Survey(_) => "surveyResponse",
            WireEvent::Redemption(_) => "redemption",
        };
        return format!("{message}.{}", camel(field));
    }
    let head = field.split('.').next().unwrap_or(field);
    draft
        .payload_field(field)
        .or_else(|| draft.payload_field(head))
        .map_or_else(|| field.to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_kizuna_field_and_its_json_spelling() {
        let r = Rejection::new(
            RejectReason::CurrencyMismatch,
            "currency USD is not the programme currency JPY",
        );
        assert_eq!(kizuna_field(&r), "currency");
        let r = Rejection::new(RejectReason::InvalidField, "3 line items, the limit is 2");
        assert_eq!(kizuna_field(&r), "body");
        let r = Rejection::new(
            RejectReason::KeyMismatch,
            "the message key is not the event's customer_id",
        );
        assert_eq!(kizuna_field(&r), "customer_id");
        let r = Rejection::new(
            RejectReason::AmountOutOfRange,
            "amount_minor: amount -5 is outside the accepted range",
        );
        assert_eq!(kizuna_field(&r), "amount_minor");
        let r = Rejection::new(RejectReason::MissingField, "event_id is empty");
        assert_eq!(kizuna_field(&r), "event_id");
        assert_eq!(camel("occurred_at"), "occurredAt");
        assert_eq!(
            camel("line_items.unit_price_minor"),
            "lineItems.unitPriceMinor"
        );
    }
}
