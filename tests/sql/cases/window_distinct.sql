-- COUNT(DISTINCT …), SUM and AVG of distinct values, MIN and MAX of strings (NULLs skipped) per currency in TUMBLE windows.
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

SELECT currency, window_start, window_end, COUNT(*) AS n,
       COUNT(DISTINCT customer_id) AS customers, COUNT(DISTINCT qty) AS qtys,
       SUM(DISTINCT amount) AS distinct_total, AVG(DISTINCT qty) AS avg_distinct_qty,
       MIN(customer_id) AS first_customer, MAX(order_id) AS last_order, MIN(DISTINCT currency) AS cur,
       COUNT(DISTINCT price) AS prices, SUM(DISTINCT price) AS distinct_price_sum
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, currency;
