//! Applying one event to a customer's state: pure, deterministic, no I/O.

use super::event::{DomainEvent, EventBody};
use super::output::{Cause, Output, OutputKind, TierChangeKind};
use super::programme::Programme;
use super::state::CustomerState;

/// Applies `event` to `state` (None for a customer seen for the first time) and returns the new
/// state and the outputs the change produced.
pub fn apply(
    state: Option<CustomerState>,
    event: &DomainEvent,
    programme: &Programme,
) -> (CustomerState, Vec<Output>) {
    let meta = &event.meta;
    let mut next = state
        .unwrap_or_else(|| CustomerState::new(meta.customer_id.clone(), programme.entry_tier()));
    let before_tier = next.tier.clone();

    match &event.body {
        EventBody::Purchase(p) => {
            next.lifetime_spend_minor = next.lifetime_spend_minor.saturating_add(p.amount.get());
            next.orders += 1.0;
            next.first_purchase_at = Some(
                next.first_purchase_at
                    .map_or(meta.occurred_at, |t| t.min(meta.occurred_at)),
            );
            next.last_purchase_at = Some(
                next.last_purchase_at
                    .map_or(meta.occurred_at, |t| t.max(meta.occurred_at)),
            );
        }
        EventBody::Refund(r) => {
            next.lifetime_spend_minor = next
                .lifetime_spend_minor
                .saturating_sub(r.amount.get())
                .max(0);
            next.unmatched_refunds += 1;
        }
        EventBody::Ticket(_) | EventBody::Survey(_) => {}
    }
    next.last_event_at = Some(
        next.last_event_at
            .map_or(meta.occurred_at, |t| t.max(meta.occurred_at)),
    );

    let qualifying = programme.qualifying_tier(next.lifetime_spend_minor, next.orders);
    let mut outputs = Vec::new();
    if qualifying.name != before_tier {
        let change = if programme.rank(&qualifying.name) > programme.rank(&before_tier) {
            TierChangeKind::Upgrade
        } else {
            TierChangeKind::Downgrade
        };
        let reason = format!(
            "spend {} {} over {} orders {} {} (needs {} {} and {} orders)",
            next.lifetime_spend_minor,
            programme.currency,
            next.orders,
            if change == TierChangeKind::Upgrade {
                "qualifies for"
            } else {
                "no longer qualifies above"
            },
            qualifying.name,
            qualifying.min_spend_minor,
            programme.currency,
            qualifying.min_orders,
        );
        next.tier = qualifying.name.clone();
        outputs.push(Output {
            customer_id: meta.customer_id.clone(),
            cause: Cause::Event(meta.event_id.clone()),
            effective_at: meta.occurred_at,
            snapshot: next.clone(),
            kind: OutputKind::TierChanged {
                previous: before_tier,
                new: next.tier.clone(),
                change,
                reason,
            },
        });
    }
    (next, outputs)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::event::{EventMeta, Purchase, Refund};
    use crate::domain::ids::{CustomerId, EventId};
    use crate::domain::money::{Currency, Minor};
    use crate::domain::programme::sample;

    fn purchase(id: &str, amount: i64, day: u32) -> DomainEvent {
        DomainEvent {
            meta: EventMeta {
                event_id: EventId::parse(id, 64).expect("id"),
                customer_id: CustomerId::parse("c1", 64).expect("id"),
                occurred_at: Utc
                    .with_ymd_and_hms(2026, 1, day, 12, 0, 0)
                    .single()
                    .expect("date"),
            },
            body: EventBody::Purchase(Purchase {
                order_id: format!("o-{id}"),
                amount: Minor::parse(amount, Minor::DEFAULT_MAX).expect("amount"),
                currency: Currency::parse("JPY").expect("jpy"),
                discount: Minor::ZERO,
                coupon_code: None,
                channel: "web".into(),
                line_items: vec![],
                referred_by: None,
            }),
        }
    }

    #[test]
    fn crossing_a_threshold_upgrades_once_with_a_reason() {
        let p = sample();
        let (s1, out1) = apply(None, &purchase("e1", 20_000, 1), &p);
        assert_eq!(s1.tier, "member");
        assert!(out1.is_empty());
        let (s2, out2) = apply(Some(s1), &purchase("e2", 15_000, 2), &p);
        assert_eq!(s2.tier, "silver");
        assert_eq!(s2.lifetime_spend_minor, 35_000);
        assert_eq!(out2.len(), 1);
        match &out2[0].kind {
            OutputKind::TierChanged {
                previous,
                new,
                change,
                reason,
            } => {
                assert_eq!((previous.as_str(), new.as_str()), ("member", "silver"));
                assert_eq!(*change, TierChangeKind::Upgrade);
                assert!(reason.contains("35000 JPY"), "{reason}");
            }
        }
        assert_eq!(
            out2[0].cause,
            Cause::Event(EventId::parse("e2", 64).expect("id"))
        );
        let (_, out3) = apply(Some(s2), &purchase("e3", 1_000, 3), &p);
        assert!(out3.is_empty(), "no change, no event");
    }

    #[test]
    fn a_refund_below_the_threshold_downgrades() {
        let p = sample();
        let (s, _) = apply(None, &purchase("e1", 20_000, 1), &p);
        let (s, _) = apply(Some(s), &purchase("e2", 20_000, 2), &p);
        assert_eq!(s.tier, "silver");
        let mut refund = purchase("r1", 0, 3);
        refund.body = EventBody::Refund(Refund {
            order_id: "o-e2".into(),
            amount: Minor::parse(15_000, Minor::DEFAULT_MAX).expect("amount"),
            currency: Currency::parse("JPY").expect("jpy"),
        });
        let (s, out) = apply(Some(s), &refund, &p);
        assert_eq!(s.tier, "member");
        assert_eq!(s.lifetime_spend_minor, 25_000);
        assert!(matches!(
            out[0].kind,
            OutputKind::TierChanged {
                change: TierChangeKind::Downgrade,
                ..
            }
        ));
    }
}
