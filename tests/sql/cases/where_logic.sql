-- WHERE with three-valued logic: a NULL condition drops the row; NOT, OR, AND, <>.
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

SELECT order_id, status
FROM orders
WHERE NOT (status = 'CANCELLED') AND (qty > 2 OR amount < 1 OR customer_id <> 'c-2');
