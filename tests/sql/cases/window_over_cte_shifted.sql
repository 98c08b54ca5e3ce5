-- A HOP window over a WITH query whose time attribute is shifted by an interval: Flink refuses a computed time attribute, and so does sluice.
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

WITH shifted AS (SELECT customer_id, qty, ts + INTERVAL '5' SECOND AS later FROM events WHERE qty IS NOT NULL)
SELECT window_start, window_end, COUNT(*) AS n, MAX(qty) AS max_qty
FROM TABLE(HOP(TABLE shifted, DESCRIPTOR(later), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
