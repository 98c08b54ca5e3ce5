-- String functions.
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

SELECT order_id, UPPER(currency) AS up, LOWER(status) AS low, CHAR_LENGTH(status) AS len,
       CONCAT(order_id, '/', currency) AS joined, order_id || '#' || status AS piped,
       SUBSTRING(status FROM 2 FOR 3) AS sub, TRIM(' x ') AS trimmed
FROM orders;
