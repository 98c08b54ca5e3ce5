-- The tables of examples/orders-cdc: an application's `orders` table (its
-- changes are read by logical replication, which needs wal_level=logical in
-- postgresql.conf and a user with the REPLICATION attribute) and the live
-- revenue per status the pipeline keeps in `revenue_by_status`.
CREATE TABLE IF NOT EXISTS orders (
    id           bigint PRIMARY KEY,
    customer_id  text NOT NULL,
    status       text NOT NULL,
    amount_cents bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Updates and deletes carry the whole row before the change: the
-- aggregate retracts what it counted.
ALTER TABLE orders REPLICA IDENTITY FULL;

CREATE TABLE IF NOT EXISTS revenue_by_status (
    status        text PRIMARY KEY,
    orders        bigint NOT NULL,
    revenue_cents bigint NOT NULL,
    largest_cents bigint NOT NULL
);

INSERT INTO orders (id, customer_id, status, amount_cents)
SELECT i, 'c' || (i % 97), (ARRAY['PENDING', 'COMPLETED', 'CANCELLED'])[1 + i % 3], 100 + i * 7 % 9900
FROM generate_series(1, 1000) i
ON CONFLICT DO NOTHING;
