WITH added AS (
    INSERT INTO outbox (ce_id, partition, customer_id, topic, key, payload, headers)
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::jsonb[])
    RETURNING 1)
SELECT pg_notify($8, '') WHERE EXISTS (SELECT 1 FROM added)
