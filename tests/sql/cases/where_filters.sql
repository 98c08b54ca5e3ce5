-- Filters with IN, BETWEEN, LIKE and IS NOT NULL in WHERE.
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
SELECT order_id, currency, amount
FROM orders
WHERE currency IN ('EUR', 'GBP', 'usd') AND amount BETWEEN -10 AND 1000 AND order_id LIKE 'o-%' AND customer_id IS NOT NULL;
