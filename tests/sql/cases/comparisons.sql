-- Literals and comparisons between types: INT with DECIMAL, DECIMAL with DOUBLE, strings.
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

SELECT order_id, qty = 3 AS q3, amount = 137.52 AS a, amount > qty AS a_gt_q, price < amount AS p_lt_a,
       status >= 'D' AS s_ge, 10000000000 AS big, 1.50 AS dec_lit, 2.5e0 AS dbl_lit, TRUE AS t
FROM orders;
