SELECT state, home_partition, version FROM customers WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE
