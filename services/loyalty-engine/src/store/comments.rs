//! Survey comments, the likeliest personal data Kizuna keeps, are stored sealed: encrypted
//! (ChaCha20-Poly1305, the customer id as associated data) under a key of their own customer,
//! kept in `customer_keys`. An erasure deletes the key (crypto-shredding): a copy of the event
//! ledger in a backup can no longer be read. The domain never reads comments; the timeline and
//! the access request open them.
//!
//! A sealed comment is `sealed:v1:` and the base64 of the nonce (12 bytes) and the ciphertext
//! with its tag, in place of the comment text.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sqlx::PgConnection;

use crate::domain::event::{DomainEvent, EventBody};

/// What a sealed comment starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// What an opened comment reads when its key is gone (the customer was erased).
pub const UNREADABLE: &str = "[unreadable: the key was erased]";

fn cipher(key: &[u8]) -> anyhow::Result<LessSafeKey> {
    let key = UnboundKey::new(&CHACHA20_POLY1305, key)
        .map_err(|_| anyhow::anyhow!("a comment key is {} bytes", CHACHA20_POLY1305.key_len()))?;
    Ok(LessSafeKey::new(key))
}

/// Seals `comment` of `customer_id` under `key` with a fresh random nonce.
pub fn seal(key: &[u8], customer_id: &str, comment: &str) -> anyhow::Result<String> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut sealed = comment.as_bytes().to_vec();
    cipher(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(customer_id.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| anyhow::anyhow!("sealing a comment failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
}

/// Opens a sealed comment; `None` when it is not one of `customer_id`'s under `key`.
pub fn open(key: &[u8], customer_id: &str, sealed: &str) -> Option<String> {
    let bytes = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let mut buf = rest.to_vec();
    let plain = cipher(key)
        .ok()?
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::from(customer_id.as_bytes()),
            &mut buf,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The comment of a survey event, if it has one.
fn comment_of(event: &DomainEvent) -> Option<&str> {
    match &event.body {
        EventBody::Survey(s) => s.comment.as_deref(),
        _ => None,
    }
}

/// The customers' comment keys, making those that do not exist yet.
pub async fn keys(
    conn: &mut PgConnection,
    customers: &[&str],
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let fresh: Vec<Vec<u8>> = customers
        .iter()
        .map(|_| rand::random::<[u8; 32]>().to_vec())
        .collect();
    sqlx::query(
        "INSERT INTO customer_keys (customer_id, comment_key)
         SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind(customers)
    .bind(&fresh)
    .execute(&mut *conn)
    .await?;
    existing_keys(conn, customers).await
}

/// The customers' comment keys that exist.
pub async fn existing_keys(
    conn: &mut PgConnection,
    customers: &[&str],
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT customer_id, comment_key FROM customer_keys WHERE customer_id = ANY($1)",
    )
    .persistent(false)
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The events with comments, sealed, by their position in `events` (the others are stored as
/// they are). Makes the keys of customers who have none yet.
pub async fn seal_events(
    conn: &mut PgConnection,
    events: &[&DomainEvent],
) -> anyhow::Result<HashMap<usize, DomainEvent>> {
    let mut customers: Vec<&str> = events
        .iter()
        .filter(|e| comment_of(e).is_some())
        .map(|e| e.meta.customer_id.as_str())
        .collect();
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    customers.sort_unstable();
    customers.dedup();
    let keys = keys(conn, &customers).await?;
    let mut sealed = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let Some(comment) = comment_of(e) else {
            continue;
        };
        let who = e.meta.customer_id.as_str();
        let key = keys
            .get(who)
            .ok_or_else(|| anyhow::anyhow!("no comment key was made for a customer"))?;
        let mut copy = (*e).clone();
        if let EventBody::Survey(s) = &mut copy.body {
            s.comment = Some(seal(key, who, comment)?);
        }
        sealed.insert(i, copy);
    }
    Ok(sealed)
}

/// Opens the sealed comment of a stored event in place, with its customer's key (`None`: the
/// key is gone, and the comment says it is unreadable).
pub fn open_event(event: &mut DomainEvent, key: Option<&[u8]>) {
    let who = event.meta.customer_id.as_str().to_owned();
    if let EventBody::Survey(s) = &mut event.body
        && let Some(c) = s.comment.as_deref()
        && c.starts_with(SEALED_PREFIX)
    {
        s.comment = Some(
            key.and_then(|k| open(k, &who, c))
                .unwrap_or_else(|| UNREADABLE.to_owned()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_comment_opens_only_with_its_key_and_customer() {
        let key = [7u8; 32];
        let sealed = seal(&key, "c-1", "my address is 1-2-3 Shibuya").expect("seal");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("Shibuya"));
        assert_eq!(
            open(&key, "c-1", &sealed).as_deref(),
            Some("my address is 1-2-3 Shibuya")
        );
        assert_eq!(open(&[8u8; 32], "c-1", &sealed), None, "another key");
        assert_eq!(open(&key, "c-2", &sealed), None, "another customer");
        let again = seal(&key, "c-1", "my address is 1-2-3 Shibuya").expect("seal");
        assert_ne!(sealed, again, "a fresh nonce each time");
        assert_eq!(open(&key, "c-1", "sealed:v1:!!"), None);
        assert_eq!(open(&key, "c-1", "plain text"), None);
    }
}
