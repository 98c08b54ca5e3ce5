-- DOUBLE arithmetic and mixing DOUBLE with DECIMAL and INT (the result is DOUBLE).
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

SELECT order_id, price * 2 AS p2, price + amount AS p_plus_a, price / qty AS per_unit, price * 1e2 AS p100
FROM orders
WHERE price IS NOT NULL;
