-- Webhook delivery (services/webhooks, `kizuna-webhooks`): subscriptions, the delivery queue,
-- the delivery log and the dead letters. Queue, log and dead-letter rows carry customer_id
-- like every per-customer table.

CREATE TABLE webhook_subscriptions (
    id                   uuid PRIMARY KEY,
    url                  text NOT NULL,
    description          text NOT NULL DEFAULT '',
    -- CloudEvents types, e.g. {kizuna.v1.TierChanged}.
    event_types          text[] NOT NULL,
    -- {"churn_levels": [...], "tiers": [...], "segments": [...]}; {} passes everything.
    filter               jsonb NOT NULL DEFAULT '{}',
    -- whsec_<base64>. After a rotation the previous one signs too until it expires.
    secret               text NOT NULL,
    previous_secret      text,
    previous_secret_until timestamptz,
    status               text NOT NULL CHECK (status IN ('active', 'paused', 'disabled')),
    disabled_reason      text,
    -- The first failure of the current unbroken run of failures, and its length.
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Events waiting for delivery, one row per (subscription, event). Only the oldest row of a
-- (subscription, customer) is ever dispatched, so a customer's events arrive in order; a row
-- leaves the queue when delivered or dead-lettered.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    customer_id      text NOT NULL,
    ce_id            uuid NOT NULL,
    ce_type          text NOT NULL,
    -- The CloudEvent as sent (structured JSON mode): the same bytes on every attempt.
    body             bytea NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    -- Set on the head of a (subscription, customer) stream only; NULL behind it.
    next_attempt_at  timestamptz,
    first_attempt_at timestamptz,
    -- Claimed by a dispatcher until then (an instance that dies mid-request lets it expire).
    lease_until      timestamptz,
    last_status      integer,
    last_error       text,
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, ce_id)
);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (subscription_id, customer_id, id);
-- Only a stream's head has a next attempt; the rows behind it wait with NULL and are promoted
-- when the head leaves the queue.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
-- Requests in flight, counted per subscription against its share of the request slots.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (subscription_id) WHERE lease_until IS NOT NULL;

-- The delivery log: every attempt with its answer and latency.
CREATE TABLE webhook_attempts (
    id              bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    customer_id     text NOT NULL,
    ce_id           uuid NOT NULL,
    ce_type         text NOT NULL,
    attempt         integer NOT NULL,
    -- NULL when no answer came back (timeout, connection refused): see error.
    status_code     integer,
    error           text,
    latency_ms      double precision NOT NULL,
    attempted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_subscription ON webhook_attempts (subscription_id, id DESC);
CREATE INDEX webhook_attempts_time ON webhook_attempts (attempted_at);

-- Per-subscription dead letters: events still failing at the end of the retry period.
CREATE TABLE webhook_dead_letters (
    id               bigserial PRIMARY KEY,
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    customer_id      text NOT NULL,
    ce_id            uuid NOT NULL,
    ce_type          text NOT NULL,
    body             bytea NOT NULL,
    attempts         integer NOT NULL,
    last_status      integer,
    last_error       text,
    first_attempt_at timestamptz,
    dead_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_dead_letters_subscription ON webhook_dead_letters (subscription_id, id DESC);

-- Replays read the engine's output_log by created_at without an index of their own: building
-- one here would block the engine's writes for as long as it takes on a large table, and a
-- replay is a rare operator action (see services/webhooks/src/store/replay.rs).
