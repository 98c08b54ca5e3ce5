-- HOP (slide 5 s, size 15 s): each row in three windows; rows late for some windows still count in the later ones.
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

SELECT customer_id, window_start, window_end, COUNT(*) AS n, SUM(qty) AS q
FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '15' SECOND))
GROUP BY window_start, window_end, customer_id;
