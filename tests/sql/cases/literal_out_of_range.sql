-- A numeric literal of over 19 digits: Flink's planner refuses it, and so does sluice.
CREATE TABLE orders (
  order_id    STRING,
  amount      DECIMAL(10, 2)
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT order_id, amount + 123456789012345678.25 AS too_long FROM orders;
