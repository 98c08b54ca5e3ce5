-- Three-valued logic with NULL operands: AND, OR, NOT over nullable columns and NULL literals.
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
SELECT order_id, (qty > 2) AND (amount > 100) AS both_big, (qty > 2) OR (amount > 100) AS either_big,
       NOT (customer_id = 'c-1') AS not_c1, (customer_id = 'c-1') IS NULL AS unknown_customer,
       CAST(NULL AS INT) + qty AS null_plus, COALESCE(CAST(NULL AS STRING), customer_id, 'none') AS who
FROM orders;
