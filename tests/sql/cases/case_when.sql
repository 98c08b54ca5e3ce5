-- CASE, searched and simple, with and without ELSE: the result type is the branches' common type.
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

SELECT order_id,
       CASE WHEN amount >= 1000 THEN 'big' WHEN amount >= 100 THEN 'mid' ELSE 'small' END AS size,
       CASE status WHEN 'COMPLETED' THEN 1 WHEN 'PENDING' THEN 2 END AS code,
       CASE WHEN qty > 5 THEN amount ELSE 0 END AS big_amount,
       CASE WHEN qty > 5 THEN 1 ELSE 2.5 END AS mixed
FROM orders;
