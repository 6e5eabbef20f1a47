//! An erasure (`kizuna erase`, `DELETE /v1/customers/{id}`): one transaction that removes a
//! customer from every table, replaces their id by a pseudonym where another customer's record
//! must keep a count, records the erasure under the id's keyed hash, and queues the receipt
//! (`CustomerErased`) in the outbox. Ingest batches wait while it runs (`store::erasure`).

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use kizuna_proto::v1;
use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool};

use crate::config::{AfterErasure, PrivacySettings};
use crate::domain::erasure::{
    pseudonym, pseudonymise_referred, pseudonymise_referrer, subject_hash,
};
use crate::domain::ids::{CustomerId, DEFAULT_MAX_ID_LEN};
use crate::partitioner::partition_for;
use crate::store::{customers, erasure, ledger, outbox};

use super::{Core, outputs};

/// What an erasure did (published as `CustomerErased`, [`Receipt::to_proto`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// HMAC-SHA256 of the id under the erasure key, lowercase hex.
    pub subject_hash: String,
    pub erased_at: DateTime<Utc>,
    pub deleted: erasure::Deleted,
    /// Messages about the customer removed from the outbox before they were published.
    pub outbox_messages: i64,
    /// Other customers' records that named this one, kept under a pseudonym.
    pub pseudonymised: i64,
    /// Until when events for the id are refused; `None` when they start a new customer.
    pub refuse_until: Option<DateTime<Utc>>,
}

impl Receipt {
    /// The receipt as published.
    pub fn to_proto(&self) -> v1::CustomerErased {
        v1::CustomerErased {
            subject_hash: self.subject_hash.clone(),
            erased_at: Some(outputs::timestamp(self.erased_at)),
            ledger_events: self.deleted.ledger_events,
            output_log_entries: self.deleted.output_log_entries,
            outbox_messages: self.outbox_messages,
            other_rows: self.deleted.other_rows,
            pseudonymised: self.pseudonymised,
            refuse_until: self.refuse_until.map(outputs::timestamp),
        }
    }
}

/// The erasure key: the configured one, or the one kept in the database (made at the first
/// erasure; kept for the process's life once read).
#[derive(Debug, Default)]
pub struct ErasureKey {
    configured: Option<Vec<u8>>,
    stored: OnceLock<Vec<u8>>,
}

impl ErasureKey {
    pub fn new(settings: &PrivacySettings) -> Self {
        Self {
            configured: settings
                .erasure_key
                .as_ref()
                .map(|k| k.expose_secret().as_bytes().to_vec()),
            stored: OnceLock::new(),
        }
    }

    /// The key, making and storing one if none exists yet (for an erasure).
    async fn get_or_make(&self, conn: &mut PgConnection) -> sqlx::Result<Vec<u8>> {
        if let Some(k) = self.configured.as_ref().or(self.stored.get()) {
            return Ok(k.clone());
        }
        let key = erasure::stored_key(conn).await?;
        Ok(self.stored.get_or_init(|| key).clone())
    }

    /// The key if one exists (for ingest: no erasure yet means no key is needed).
    pub async fn get(&self, pool: &PgPool) -> sqlx::Result<Option<&[u8]>> {
        if let Some(k) = self.configured.as_ref().or(self.stored.get()) {
            return Ok(Some(k));
        }
        Ok(erasure::existing_key(pool)
            .await?
            .map(|key| self.stored.get_or_init(|| key).as_slice()))
    }
}

/// Erases `customer_id` at `now`. Returns the receipt, or `None` (and changes nothing) when the
/// id has no data and was never erased. Erasing again returns a receipt with nothing deleted.
pub async fn erase(
    core: &Core,
    customer_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Receipt>> {
    let settings = &core.privacy;
    let mut tx = core.pool.begin().await?;
    erasure::lock_out_ingest(&mut tx).await?;
    let key = core.erasure_key.get_or_make(&mut tx).await?;
    let hash = subject_hash(&key, customer_id);
    let alias = pseudonym(&hash);
    let alias_id = CustomerId::parse(&alias, DEFAULT_MAX_ID_LEN)?;

    // Referrers keep the count of their referrals and their bonuses, under the pseudonym.
    let mut pseudonymised = 0i64;
    for referrer in erasure::referrers_of(&mut tx, customer_id).await? {
        let Ok(id) = CustomerId::parse(&referrer, usize::MAX) else {
            continue;
        };
        let mut rows = customers::load_for_update(&mut tx, &[&id]).await?;
        if let Some(mut row) = rows.remove(&id)
            && pseudonymise_referred(&mut row.state, customer_id, &alias)
        {
            customers::replace_state(&mut tx, &referrer, &row.state).await?;
            pseudonymised += 1;
        }
    }
    // Customers this one referred keep their purchases, naming the pseudonym.
    let mut referred = erasure::referred_purchases(&mut tx, customer_id).await?;
    for (_, _, body) in &mut referred {
        let mut event = ledger::decode(body)?;
        if pseudonymise_referrer(&mut event, customer_id, &alias_id) {
            *body = ledger::encode(&event)?;
        }
    }
    if !referred.is_empty() {
        erasure::rewrite_referrer(&mut tx, &referred, &alias).await?;
        pseudonymised += i64::try_from(referred.len()).unwrap_or(i64::MAX);
    }

    let deleted = erasure::delete_rows(&mut tx, customer_id).await?;
    let outbox_messages = outbox::remove_customer(&mut tx, customer_id).await?;
    let nothing =
        deleted == erasure::Deleted::default() && outbox_messages == 0 && pseudonymised == 0;
    if nothing && !erasure::was_erased(&mut tx, &hash).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let refuse_until = match settings.after_erasure {
        AfterErasure::Refuse => Some(now + Duration::days(i64::from(settings.refuse_days))),
        AfterErasure::NewCustomer => None,
    };
    erasure::record(&mut tx, &hash, now, refuse_until).await?;
    let receipt = Receipt {
        subject_hash: hash,
        erased_at: now,
        deleted,
        outbox_messages,
        pseudonymised,
        refuse_until,
    };
    let partition = partition_for(customer_id.as_bytes(), core.partitions);
    let message = outputs::customer_erased(&receipt.to_proto(), now, partition, &core.topics)?;
    outbox::insert(&mut tx, [&message]).await?;
    tx.commit().await?;
    Ok(Some(receipt))
}
