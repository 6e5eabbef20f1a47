-- Kizuna's system of record. Every per-customer table carries customer_id so the schema can
-- be distributed by it (Citus).

-- One row per customer: projected columns for queries, the full domain state as JSON.
CREATE TABLE customers (
    customer_id          text PRIMARY KEY,
    tier                 text NOT NULL,
    lifetime_spend_minor bigint NOT NULL,
    orders               double precision NOT NULL,
    -- Input partition this customer's events arrive on; the instance that owns it relays the
    -- customer's outbox rows and sweeps the customer.
    home_partition       integer NOT NULL,
    -- The full domain state, MessagePack with field names (compact, and tolerant of added
    -- fields); `GET /v1/customers/{id}` shows it as JSON.
    state                bytea NOT NULL,
    segment              text,
    churn_level          text,
    -- When the sweeper should re-evaluate this customer (grace expiry, windows sliding, ...).
    next_check_at        timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- The state is rewritten on every change: lz4 compresses it far faster than the default pglz.
ALTER TABLE customers ALTER COLUMN state SET COMPRESSION lz4;
CREATE INDEX customers_due ON customers (home_partition, next_check_at) WHERE next_check_at IS NOT NULL;

-- Every applied input event, once. The primary key is the event-id deduplication.
CREATE TABLE event_ledger (
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    occurred_at timestamptz NOT NULL,
    kind        text NOT NULL,
    -- The customer this purchase credits as its referrer, if any.
    referred_by text,
    -- The validated event, MessagePack with field names: written once, read rarely
    -- (timeline, recompute).
    body        bytea NOT NULL,
    source      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, event_id)
);
-- Referral credits, for `kizuna recompute`.
CREATE INDEX event_ledger_referrer ON event_ledger (referred_by) WHERE referred_by IS NOT NULL;

-- Consumer positions, written in the same transaction as the state they produced. Kafka's own
-- committed offsets are for lag monitoring only.
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Transactional outbox: output events and dead letters, published by the relay.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    -- The message's deterministic ce_id: after a crash the relay skips rows whose ce_id is
    -- already on the output topic.
    ce_id       text NOT NULL,
    -- Input partition that produced the row; only the instance owning it publishes the row.
    partition   integer NOT NULL,
    customer_id text,
    topic       text NOT NULL,
    key         bytea,
    payload     bytea NOT NULL,
    -- [[name, base64 value], ...]
    headers     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_partition_id ON outbox (partition, id);

-- Every output event, kept for the customer timeline (the outbox forgets published rows).
CREATE TABLE output_log (
    customer_id  text NOT NULL,
    ce_id        uuid NOT NULL,
    ce_type      text NOT NULL,
    caused_by    text NOT NULL,
    effective_at timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, ce_id)
);
CREATE INDEX output_log_cause ON output_log (customer_id, caused_by);

-- Audit trail of manual tier overrides.
CREATE TABLE tier_overrides (
    id            bigserial PRIMARY KEY,
    customer_id   text NOT NULL,
    previous_tier text NOT NULL,
    tier          text NOT NULL,
    reason        text NOT NULL,
    set_by        text NOT NULL,
    set_at        timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX tier_overrides_customer ON tier_overrides (customer_id, set_at DESC);

-- The event-time clock (`--clock event-time`): the largest event time seen per consumer group.
CREATE TABLE engine_clock (
    group_id       text PRIMARY KEY,
    max_event_time timestamptz NOT NULL
);

-- Fitted BG/NBD and Gamma-Gamma population parameters (`kizuna fit-model`). The engine uses
-- the highest version and picks up new ones without a restart.
CREATE TABLE churn_models (
    version           bigserial PRIMARY KEY,
    fitted_at         timestamptz NOT NULL DEFAULT now(),
    as_of             timestamptz NOT NULL,
    r                 double precision NOT NULL,
    alpha             double precision NOT NULL,
    a                 double precision NOT NULL,
    b                 double precision NOT NULL,
    log_likelihood    double precision NOT NULL,
    customers         double precision NOT NULL,
    gg_p              double precision,
    gg_q              double precision,
    gg_gamma          double precision,
    gg_log_likelihood double precision,
    gg_customers      double precision,
    report            text NOT NULL
);
