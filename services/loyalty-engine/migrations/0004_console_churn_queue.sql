-- The console (services/loyalty-engine/src/console): what its pages read without scanning the
-- population per request.

-- The churn queue: each customer's play and value at risk (churn score × CLV, or × lifetime
-- spend where no CLV is known), written with the row like tier, segment and churn_level. Rows
-- written before this migration have NULL until their next write (or `kizuna recompute`).
ALTER TABLE customers ADD COLUMN churn_play text, ADD COLUMN value_at_risk double precision;
CREATE INDEX customers_churn_queue ON customers (value_at_risk DESC NULLS LAST, customer_id)
    WHERE churn_level IN ('medium', 'high');

-- Moves between grid cells and churn alerts over the last days, read by the console's snapshot
-- task from output_log by type and time.
CREATE INDEX output_log_type_time ON output_log (ce_type, effective_at);

-- Dead letters per hour (engine time) and reason, counted in the batch that queues them.
CREATE TABLE dead_letter_counts (
    hour   timestamptz NOT NULL,
    reason text NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (hour, reason)
);
