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
    state                jsonb NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_tier ON customers (tier);

-- Every applied input event, once. The primary key is the event-id deduplication.
CREATE TABLE event_ledger (
    customer_id text NOT NULL,
    event_id    text NOT NULL,
    occurred_at timestamptz NOT NULL,
    kind        text NOT NULL,
    body        jsonb NOT NULL,
    source      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, event_id)
);
CREATE INDEX event_ledger_customer_time ON event_ledger (customer_id, occurred_at DESC);

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
