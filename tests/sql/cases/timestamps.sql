-- TIMESTAMP_LTZ from epoch milliseconds and seconds, interval arithmetic, casts and comparisons.
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

SELECT order_id, ts, TO_TIMESTAMP_LTZ(event_ts / 1000, 0) AS secs, ts + INTERVAL '1' MINUTE AS later,
       ts - INTERVAL '1:30.5' MINUTE TO SECOND AS earlier, CAST(ts AS STRING) AS ts_text,
       ts > CAST('2023-11-14 22:13:30.000' AS TIMESTAMP(3)) AS after_10s,
       CAST(CAST(ts AS TIMESTAMP(3)) AS STRING) AS wall
FROM events WHERE qty IS NOT NULL;
