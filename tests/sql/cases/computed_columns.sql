-- Computed columns (`name AS expr`) are evaluated on read and can be selected and filtered on.
CREATE TABLE orders (
  order_id    STRING,
  amount      DECIMAL(10, 2),
  qty         INT,
  cents AS CAST(amount * 100 AS BIGINT),
  total AS amount * qty,
  label AS UPPER(order_id) || ':' || CAST(qty AS STRING)
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT order_id, cents, total, label FROM orders WHERE cents > 0;
