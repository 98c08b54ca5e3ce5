-- LIKE, IN and BETWEEN (and their NOTs).
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

SELECT order_id, status LIKE 'COMP%' AS comp, currency IN ('EUR', 'GBP') AS europe,
       amount BETWEEN 50 AND 150 AS mid, qty NOT IN (1, 2, 3) AS odd_qty,
       order_id LIKE 'o-_' AS short_id, status NOT LIKE '%ED' AS not_ed
FROM orders;
