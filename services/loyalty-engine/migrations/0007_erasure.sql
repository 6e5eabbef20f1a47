-- Erasure (issue 18): `kizuna erase CUSTOMER_ID` and `DELETE /v1/customers/{id}`.

-- Erased customers, by the keyed hash of their id only (HMAC-SHA256 under the erasure key,
-- lowercase hex): a later event for the id is refused until `refuse_until`
-- (`privacy.after_erasure = "refuse"`), or starts a new customer (NULL).
CREATE TABLE erased_customers (
    subject_hash text PRIMARY KEY,
    erased_at    timestamptz NOT NULL,
    refuse_until timestamptz
);
CREATE INDEX erased_customers_refusing ON erased_customers (refuse_until)
    WHERE refuse_until IS NOT NULL;

-- The erasure key when `privacy.erasure_key` is not configured: made at the first erasure.
CREATE TABLE privacy_keys (
    id          integer PRIMARY KEY CHECK (id = 1),
    erasure_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Crypto-shredding: each customer's key for their survey comments (ChaCha20-Poly1305). The
-- comment is stored sealed in the event ledger; an erasure deletes the key, so copies of the
-- ledger in backups cannot be read either, provided this table's backups do not outlive the
-- erasure deadline (see the README, "Privacy and security").
CREATE TABLE customer_keys (
    customer_id text PRIMARY KEY,
    comment_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
