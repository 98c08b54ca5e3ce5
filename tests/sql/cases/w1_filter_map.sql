-- W1's query (shared/bench/sql/w1.sql): filter and map, DECIMAL(10,2) * DECIMAL(3,2).
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

SELECT order_id, customer_id,
       amount * CASE currency WHEN 'USD' THEN 1.00 WHEN 'EUR' THEN 1.10 WHEN 'GBP' THEN 1.25 END AS amount_usd
FROM orders
WHERE status = 'COMPLETED' AND amount > 100.00;
