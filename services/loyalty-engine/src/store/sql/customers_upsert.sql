INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state,
                       segment, next_check_at, churn_level, version, churn_play,
                       value_at_risk, points_available, points_pending, points_debt,
                       points_expiring, updated_at)
SELECT c, t, s, o, p, d, g, n, l, v, y, r, pa, pp, pd, pe::jsonb, now()
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[], $5::int[], $6::bytea[],
            $7::text[], $8::timestamptz[], $9::text[], $10::bigint[], $11::text[],
            $12::float8[], $13::bigint[], $14::bigint[], $15::bigint[], $16::text[])
     AS x(c, t, s, o, p, d, g, n, l, v, y, r, pa, pp, pd, pe)
ON CONFLICT (customer_id) DO UPDATE SET
    tier = EXCLUDED.tier,
    lifetime_spend_minor = EXCLUDED.lifetime_spend_minor,
    orders = EXCLUDED.orders,
    home_partition = EXCLUDED.home_partition,
    state = EXCLUDED.state,
    segment = EXCLUDED.segment,
    next_check_at = EXCLUDED.next_check_at,
    churn_level = EXCLUDED.churn_level,
    version = EXCLUDED.version,
    churn_play = EXCLUDED.churn_play,
    value_at_risk = EXCLUDED.value_at_risk,
    points_available = EXCLUDED.points_available,
    points_pending = EXCLUDED.points_pending,
    points_debt = EXCLUDED.points_debt,
    points_expiring = EXCLUDED.points_expiring,
    updated_at = now()
WHERE customers.version = EXCLUDED.version - 1
RETURNING customer_id
