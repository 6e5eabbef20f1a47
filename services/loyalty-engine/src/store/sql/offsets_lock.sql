INSERT INTO consumer_offsets AS c (group_id, topic, partition, next_offset)
SELECT $1, t, p, 0 FROM unnest($2::text[], $3::int[]) AS x(t, p) ORDER BY t, p
ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = c.next_offset
RETURNING topic, partition, next_offset
