INSERT INTO output_log (customer_id, ce_id, ce_type, caused_by, effective_at, payload)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
ON CONFLICT DO NOTHING
