-- SESSION per customer, gap 5 s: window_end = last row + gap; a NULL customer is a group of its own.
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

SELECT customer_id, window_start, window_end, COUNT(*) AS n, SUM(qty) AS q, MIN(ts) AS first_ts
FROM TABLE(SESSION(TABLE events PARTITION BY customer_id, DESCRIPTOR(ts), INTERVAL '5' SECOND))
GROUP BY window_start, window_end, customer_id;
