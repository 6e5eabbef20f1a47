INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, referred_by, body, source)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::bytea[], $7::text[])
ON CONFLICT (customer_id, event_id) DO NOTHING
RETURNING customer_id, event_id
