-- CURRENT_WATERMARK row by row: NULL before the first watermark, then max(ts) - 2 s of the rows before.
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

SELECT order_id, ts, CURRENT_WATERMARK(ts) AS wm,
       CASE WHEN CURRENT_WATERMARK(ts) IS NULL OR ts > CURRENT_WATERMARK(ts) THEN 'on time' ELSE 'late' END AS arrival
FROM events;
