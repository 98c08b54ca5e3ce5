-- AVG of INT is INT, Java's division (toward zero); SUM of DOUBLE; the orders data has negative quantities.
CREATE TABLE events (
  order_id    STRING,
  customer_id STRING,
  amount      DECIMAL(10, 2),
  currency    STRING,
  qty         INT,
  price       DOUBLE,
  event_ts    BIGINT,
  ts AS TO_TIMESTAMP_LTZ(event_ts, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT window_start, AVG(qty) AS avg_qty, SUM(qty) AS sum_qty, SUM(price) AS sum_price, MIN(order_id IS NULL) AS m
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '4' SECOND))
GROUP BY window_start, window_end;
