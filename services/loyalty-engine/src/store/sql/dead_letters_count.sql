INSERT INTO dead_letter_counts (hour, reason, n)
SELECT $1, r, n FROM unnest($2::text[], $3::bigint[]) AS x(r, n)
ON CONFLICT (hour, reason) DO UPDATE SET n = dead_letter_counts.n + EXCLUDED.n
