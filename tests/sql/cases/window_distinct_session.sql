-- Sessions per currency: distinct customers and the smallest and largest order ids of merged sessions.
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

SELECT currency, window_start, window_end, COUNT(DISTINCT customer_id) AS customers,
       MIN(order_id) AS first_order, MAX(order_id) AS last_order, COUNT(*) AS n
FROM TABLE(SESSION(TABLE events PARTITION BY currency, DESCRIPTOR(ts), INTERVAL '4' SECOND))
GROUP BY window_start, window_end, currency;
