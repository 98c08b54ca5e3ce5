-- A view, a CTE and a subquery in FROM, one over the other.
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

CREATE TEMPORARY VIEW usd AS
SELECT order_id, customer_id, amount, qty FROM events WHERE currency = 'USD';

WITH big AS (SELECT order_id, amount * 2 AS twice, qty FROM usd WHERE amount > 1)
SELECT s.order_id, s.twice, s.q1
FROM (SELECT order_id, twice, qty + 1 AS q1 FROM big) AS s
WHERE s.twice < 100;
