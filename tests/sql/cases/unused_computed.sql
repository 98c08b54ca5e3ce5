-- A computed column the query does not read is not evaluated: its CAST would fail on every row.
CREATE TABLE orders (
  order_id    STRING,
  status      STRING,
  bad AS CAST(status AS INT)
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT order_id FROM orders WHERE status = 'PENDING';
