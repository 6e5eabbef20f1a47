-- Old history (issue 17): how far the ledger pruning job has deleted events. A backfill judges
-- "too old for the ledger" against its own event-time clock, so it may bring events older than
-- the wall clock's retention; but an event older than this horizon may have been applied and
-- pruned already (a resend could not be recognised), so the backfill refuses it.
CREATE TABLE ledger_pruned (
    id     integer PRIMARY KEY CHECK (id = 1),
    before timestamptz NOT NULL
);
