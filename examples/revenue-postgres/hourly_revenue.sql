-- The table of the revenue examples: one row per customer and hour, upserted
-- by the `postgres` sink (its primary key is the window's key).
CREATE TABLE IF NOT EXISTS hourly_revenue (
    customer_id text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    orders bigint NOT NULL,
    revenue_usd_cents bigint NOT NULL,
    PRIMARY KEY (customer_id, window_start)
);
