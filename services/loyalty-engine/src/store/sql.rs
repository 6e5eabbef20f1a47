//! The statements of the batch write path, once: each lives in `sql/<name>.sql` and is used
//! by its store function and by the bench's database ceiling (`kizuna-bench ceiling`), which
//! must do the same SQL work as the engine.

/// Loads and locks customers' rows, in id order (`customers::load_for_update`).
pub const CUSTOMERS_LOCK: &str = include_str!("sql/customers_lock.sql");

/// Writes customers' rows, each only over the version it was evaluated from (`customers::upsert`).
pub const CUSTOMERS_UPSERT: &str = include_str!("sql/customers_upsert.sql");

/// Records events; the ones returned are new: the event-id deduplication (`ledger::insert_new`).
pub const LEDGER_INSERT: &str = include_str!("sql/ledger_insert.sql");

/// Appends outputs and dead letters to the outbox and notifies the relay (`outbox::insert`).
pub const OUTBOX_INSERT: &str = include_str!("sql/outbox_insert.sql");

/// Logs published outputs for the timeline (`audit::log_outputs`).
pub const OUTPUT_LOG_INSERT: &str = include_str!("sql/output_log_insert.sql");

/// Locks the partitions' offset rows (creating them at 0) and returns them (`offsets::lock`).
pub const OFFSETS_LOCK: &str = include_str!("sql/offsets_lock.sql");

/// Moves the partitions' next offsets forwards (`offsets::advance`).
pub const OFFSETS_ADVANCE: &str = include_str!("sql/offsets_advance.sql");

/// Adds a batch's dead letters to the hour's counts per reason (`dead_letters::count`).
pub const DEAD_LETTERS_COUNT: &str = include_str!("sql/dead_letters_count.sql");

/// Moves the event-time clock forwards (`clock::advance`).
pub const CLOCK_ADVANCE: &str = include_str!("sql/clock_advance.sql");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_loaded() {
        for sql in [
            CUSTOMERS_LOCK,
            CUSTOMERS_UPSERT,
            LEDGER_INSERT,
            OUTBOX_INSERT,
            OUTPUT_LOG_INSERT,
            OFFSETS_LOCK,
            OFFSETS_ADVANCE,
            DEAD_LETTERS_COUNT,
            CLOCK_ADVANCE,
        ] {
            let first = sql.split_whitespace().next().unwrap_or_default();
            assert!(
                ["SELECT", "INSERT", "UPDATE", "WITH"].contains(&first),
                "{sql}"
            );
        }
    }
}
