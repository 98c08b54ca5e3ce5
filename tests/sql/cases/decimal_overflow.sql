-- DECIMAL overflow: a CAST over the target's precision is NULL; a CAST rounds half up to its scale.
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
SELECT order_id, CAST(amount AS DECIMAL(5, 2)) AS narrow, CAST(amount AS DECIMAL(4, 0)) AS rounded,
       CAST(amount AS DECIMAL(38, 30)) * 100 AS wide, 12345678901234567.25 AS big_lit,
       CAST(amount AS DECIMAL(12, 4)) / 7 AS sevenths
FROM orders;
