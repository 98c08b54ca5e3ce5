-- A window over a view whose DESCRIPTOR column is not a time attribute: refused.
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

CREATE VIEW v AS SELECT order_id, CAST(ts AS TIMESTAMP(3)) AS plain FROM events;

SELECT window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE v, DESCRIPTOR(plain), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
