WITH added AS (
    INSERT INTO outbox (partition, message_count, topics, messages)
    SELECT p, n, string_to_array(t, ' '), m
    FROM unnest($1::int[], $2::int[], $3::text[], $4::bytea[]) AS u(p, n, t, m)
    RETURNING 1)
SELECT pg_notify($5, '') WHERE EXISTS (SELECT 1 FROM added)
