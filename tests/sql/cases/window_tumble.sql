-- TUMBLE per customer: every aggregate, the window columns, a late row (e-7) and a very late one (e-16) dropped.
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

SELECT customer_id, window_start, window_end, COUNT(*) AS n, COUNT(qty) AS n_qty,
       SUM(amount) AS total, AVG(qty) AS avg_qty, MIN(price) AS min_price, MAX(price) AS max_price,
       MAX(ts) AS last_ts, SUM(qty) AS sum_qty, AVG(amount) AS avg_amount, AVG(price) AS avg_price
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, customer_id;
