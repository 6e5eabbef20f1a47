INSERT INTO engine_clock (group_id, max_event_time) VALUES ($1, $2)
ON CONFLICT (group_id) DO UPDATE SET max_event_time = GREATEST(engine_clock.max_event_time, EXCLUDED.max_event_time)
