-- The customers table of the lookup-join example: c-1 … c-9000 (the
-- generator's orders go up to c-10000, so some have no customer row).
-- Tiers by id: every 10th customer gold, every 3rd silver, others bronze.
CREATE TABLE IF NOT EXISTS customers (
    customer_id text PRIMARY KEY,
    tier text NOT NULL,
    since timestamptz NOT NULL
);
INSERT INTO customers
SELECT 'c-' || i,
       CASE WHEN i % 10 = 0 THEN 'gold' WHEN i % 3 = 0 THEN 'silver' ELSE 'bronze' END,
       timestamptz '2020-01-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, 9000) AS i
ON CONFLICT (customer_id) DO NOTHING;
