//! Erasure: what stands for an erased customer's id afterwards, and how other customers'
//! records that name them keep their counts without the id. Pure: the key is passed in.
//!
//! - The **subject hash** is HMAC-SHA256 of the id under the erasure key, in lowercase hex: the
//!   receipt (`CustomerErased`) and the list of erased ids carry it, never the id.
//! - The **pseudonym** (`erased-` and the hash's first 16 hex digits) replaces the id where
//!   another customer's record must keep a count: the referrer's referrals and referral
//!   bonuses, the referred customers' purchases naming the erased referrer.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::event::{DomainEvent, EventBody};
use super::ids::CustomerId;
use super::points::ledger::MovementKind;
use super::points::referral;
use super::state::CustomerState;

/// HMAC-SHA256 of `customer_id` under `key`, lowercase hex.
pub fn subject_hash(key: &[u8], customer_id: &str) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(customer_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What stands for an erased customer in other customers' records.
pub fn pseudonym(subject_hash: &str) -> String {
    let short: String = subject_hash.chars().take(16).collect();
    format!("erased-{short}")
}

/// Replaces `referred` (an erased customer this one referred) by `pseudonym` in a referrer's
/// state: the referral stays counted, the referral bonus and its cancellation keep their
/// amounts and lots. Returns whether anything changed.
pub fn pseudonymise_referred(state: &mut CustomerState, referred: &str, pseudonym: &str) -> bool {
    let mut changed = false;
    if state.facts.referrals.remove(referred) {
        state.facts.referrals.insert(pseudonym.to_owned());
        changed = true;
    }
    let renames = [
        (referral::bonus_id(referred), referral::bonus_id(pseudonym)),
        (
            referral::cancel_id(referred),
            referral::cancel_id(pseudonym),
        ),
    ];
    let renamed = |id: &str| {
        renames
            .iter()
            .find(|(from, _)| from == id)
            .map(|(_, to)| to.clone())
    };
    for m in &mut state.points.movements {
        if let Some(to) = renamed(&m.id) {
            m.id = to;
            changed = true;
        }
        if let MovementKind::Clawback { order_id } = &mut m.kind
            && let Some(to) = renamed(order_id)
        {
            *order_id = to;
            changed = true;
        }
    }
    let warned: Vec<String> = state
        .points
        .warned
        .keys()
        .filter(|lot| renamed(lot).is_some())
        .cloned()
        .collect();
    for lot in warned {
        if let (Some(at), Some(to)) = (state.points.warned.remove(&lot), renamed(&lot)) {
            state.points.warned.insert(to, at);
            changed = true;
        }
    }
    changed
}

/// Replaces the erased `referrer` by `pseudonym` in a referred customer's purchase. Returns
/// whether the event named them.
pub fn pseudonymise_referrer(
    event: &mut DomainEvent,
    referrer: &str,
    pseudonym: &CustomerId,
) -> bool {
    match &mut event.body {
        EventBody::Purchase(p)
            if p.referred_by
                .as_ref()
                .is_some_and(|r| r.as_str() == referrer) =>
        {
            p.referred_by = Some(pseudonym.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_hash_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            subject_hash(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(subject_hash(b"k1", "c-1"), subject_hash(b"k2", "c-1"));
        assert_ne!(subject_hash(b"k1", "c-1"), subject_hash(b"k1", "c-2"));
    }

    #[test]
    fn the_pseudonym_is_short_and_a_valid_id() {
        let p = pseudonym(&subject_hash(b"k", "c-1"));
        assert!(p.starts_with("erased-") && p.len() == 23, "{p}");
        assert!(CustomerId::parse(&p, 128).is_ok());
    }
}
