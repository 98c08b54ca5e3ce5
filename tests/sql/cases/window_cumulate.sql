-- CUMULATE (step 5 s, max 20 s): windows growing from a common start.
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

SELECT window_start, window_end, COUNT(*) AS n, SUM(amount) AS total, MAX(event_ts) AS last
FROM TABLE(CUMULATE(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '20' SECOND))
GROUP BY window_start, window_end;
