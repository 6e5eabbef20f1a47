-- Points (issue 16): the stored first answer of every redemption and cancel request, and each
-- customer's points as columns for the liability figures.

-- `POST /v1/customers/{id}/redemptions` (operation `redeem`) and
-- `POST /v1/customers/{id}/redemptions/{key}/cancel` (operation `cancel`): the request under
-- its Idempotency-Key and the answer given to it, byte for byte. The row is inserted first in
-- the request's transaction, so a second request with the same key waits on it, then reads
-- the answer. Refusals that depend on the customer's points (409 insufficient_points, 422 …)
-- are stored too; refusals that change nothing (404 unknown customer, 503) are not.
CREATE TABLE points_redemptions (
    customer_id     text NOT NULL,
    operation       text NOT NULL,
    idempotency_key text NOT NULL,
    -- What was asked (points, reward): the same key with a different request is refused.
    request         jsonb NOT NULL,
    -- HTTP status and body of the first answer (NULL only inside the first transaction).
    status          integer,
    answer          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, operation, idempotency_key)
);

-- The points folded from the customer's ledger when the row was last written (the engine's
-- "now" of that evaluation; the sweeper re-evaluates at each release and expiry). Written by
-- the same upsert as the state. `points_expiring`: the open lots' remaining points by the date
-- they expire as things stand, [[due as Unix seconds, points], …], NULL when there is none.
ALTER TABLE customers
    ADD COLUMN points_available bigint NOT NULL DEFAULT 0,
    ADD COLUMN points_pending   bigint NOT NULL DEFAULT 0,
    ADD COLUMN points_debt      bigint NOT NULL DEFAULT 0,
    ADD COLUMN points_expiring  jsonb,
    -- The last line of defence: a bug that would spend points twice fails the transaction.
    ADD CONSTRAINT customers_points_available_not_negative CHECK (points_available >= 0),
    ADD CONSTRAINT customers_points_pending_not_negative CHECK (points_pending >= 0);
