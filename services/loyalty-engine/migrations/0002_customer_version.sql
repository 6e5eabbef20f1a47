-- Optimistic concurrency for customer rows. A customer seen for the first time has no row to
-- lock, so two writers (or instances) that receive that customer's first events on different
-- partitions at the same moment would both build a state from nothing, and the later write
-- would overwrite the earlier one. Every write now says which version it replaces (0 for a
-- row it expects not to exist); a write whose expectation is stale updates nothing, and the
-- writer re-applies its events on the row it then finds (see store/customers.rs `upsert`).
ALTER TABLE customers ADD COLUMN version bigint NOT NULL DEFAULT 1;
