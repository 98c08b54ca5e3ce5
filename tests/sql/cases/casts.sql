-- CAST between numbers and strings: DECIMAL to BIGINT and INT truncate toward zero.
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

SELECT order_id, CAST(amount AS BIGINT) AS a_bigint, CAST(amount AS INT) AS a_int,
       CAST(amount AS DOUBLE) AS a_double, CAST(qty AS STRING) AS q_str,
       CAST(amount AS STRING) AS a_str, CAST(qty AS DECIMAL(12, 3)) AS q_dec,
       CAST(event_ts AS DOUBLE) / 1000 AS secs
FROM orders;
