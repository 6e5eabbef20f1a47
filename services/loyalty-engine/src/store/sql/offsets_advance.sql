UPDATE consumer_offsets c SET next_offset = GREATEST(c.next_offset, x.o), updated_at = now()
FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)
WHERE c.group_id = $1 AND c.topic = x.t AND c.partition = x.p
