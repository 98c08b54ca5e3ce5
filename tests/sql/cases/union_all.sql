-- UNION ALL: the left side names the columns, each column takes the common type of both sides.
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

SELECT order_id, qty AS n, currency FROM events WHERE currency = 'EUR'
UNION ALL
SELECT customer_id, amount, 'X' FROM events WHERE qty > 8
UNION ALL
SELECT order_id, price, currency FROM events WHERE price < 1;
