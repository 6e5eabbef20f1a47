//! Retried deliveries are harmless: every event's `eventId` is derived, deterministically, from
//! the delivery's idempotency key, so a resent delivery produces the same ids and the engine's
//! event-id deduplication (its event ledger) drops the copies.
//!
//! The key is, in this order: the `Idempotency-Key` header; the platform's own delivery id
//! (Shopify `X-Shopify-Webhook-Id`, Zendesk's event `id` or `X-Zendesk-Webhook-Invocation-Id`,
//! Typeform's `event_id`). Some events carry a stronger key of their own: a Shopify refund is keyed
//! by its refund id, since the same refund arrives in every later update of its order.
//!
//! `eventId = "<source>-" + UUIDv5(namespace, "<source>\n<key>\n<part>")`, where `part` tells the
//! events of one delivery apart (`order`, `refund`, `ticket`, `answer:<question ref>`,
//! `line:<n>`).

use uuid::Uuid;

use crate::api::Source;

/// The header a caller may set to make its own retries harmless.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Longest idempotency key accepted (longer keys get 400).
pub const MAX_KEY_LEN: usize = 255;

/// The namespace of derived event ids. Never change it: ids would change with it, and resends of
/// deliveries made before the change would count twice.
const NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7a75_6e61_4761_7465_7761_7900_0001);

/// The kizuna `eventId` of the event `part` of the delivery `key` from `source`.
pub fn event_id(source: Source, key: &str, part: &str) -> String {
    let name = format!("{}\n{key}\n{part}", source.as_str());
    format!(
        "{}-{}",
        source.as_str(),
        Uuid::new_v5(&NAMESPACE, name.as_bytes()).hyphenated()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_delivery_gives_the_same_ids_and_parts_differ() {
        let a = event_id(
            Source::Shopify,
            "b39d2c2f-2871-4f2e-9f8c-8d2e3f4a5b6c",
            "order",
        );
        assert_eq!(
            a,
            event_id(
                Source::Shopify,
                "b39d2c2f-2871-4f2e-9f8c-8d2e3f4a5b6c",
                "order"
            )
        );
        assert_ne!(
            a,
            event_id(
                Source::Shopify,
                "b39d2c2f-2871-4f2e-9f8c-8d2e3f4a5b6c",
                "refund"
            )
        );
        assert_ne!(
            a,
            event_id(
                Source::Zendesk,
                "b39d2c2f-2871-4f2e-9f8c-8d2e3f4a5b6c",
                "order"
            )
        );
        assert!(
            a.starts_with("shopify-") && a.len() == "shopify-".len() + 36,
            "{a}"
        );
        // Pinned: a change here would make resends of older deliveries count twice.
        assert_eq!(
            event_id(Source::Typeform, "LtWXD3crgy", "answer:nps"),
            "typeform-2b29489a-70c0-5a68-8f76-e2fc81f56b66"
        );
    }
}
