-- A window without group keys: one row per window; AVG of DECIMAL, COUNT of a nullable column.
CREATE TABLE events (
  order_id    STRING,
  customer_id STRING,
  amount      DECIMAL(10, 2),
  currency    STRING,
  qty         INT,
  price       DOUBLE,
  event_ts    BIGINT,
  ts AS TO_TIMESTAMP_LTZ(event_ts, 3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/events.jsonl',
  'format' = 'json'
);

SELECT window_start, window_end, COUNT(*) AS n, COUNT(qty) AS nq, AVG(amount) AS avg_amount,
       MIN(amount) AS lo, MAX(customer_id IS NULL) AS any_null_customer
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '15' SECOND))
GROUP BY window_start, window_end;
