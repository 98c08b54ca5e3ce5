-- Two group keys besides the window, and an offset TUMBLE.
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

SELECT window_start, window_end, window_time, customer_id, currency, COUNT(*) AS n, AVG(price) AS p
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '3' SECOND))
GROUP BY window_start, window_end, window_time, customer_id, currency;
