-- A window TVF over a view that filters and renames: the view passes the time attribute on.
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

CREATE VIEW eur AS SELECT order_id, customer_id AS who, amount, ts AS t FROM events WHERE currency = 'EUR';

SELECT who, window_start, window_end, COUNT(*) AS n, SUM(amount) AS total
FROM TABLE(TUMBLE(TABLE eur, DESCRIPTOR(t), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, who;
