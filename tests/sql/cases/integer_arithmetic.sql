-- INT and BIGINT arithmetic: INT overflows as Java's int does; integer division truncates.
CREATE TABLE orders (
  order_id    STRING,
  customer_id STRING,
  amount      DECIMAL(10, 2),
  currency    STRING,
  status      STRING,
  qty         INT,
  price       DOUBLE,
  event_ts    BIGINT
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT order_id, qty + 1 AS q1, qty * 2 AS q2, qty / 3 AS q3, qty - event_ts AS q4, event_ts / 1000 AS secs,
       MOD(qty, 3) AS m3, qty * 1.5 AS q5, -qty AS q6
FROM orders;
