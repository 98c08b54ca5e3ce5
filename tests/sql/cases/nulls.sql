-- Missing and null fields read as NULL; NULL through arithmetic, IS [NOT] NULL and COALESCE.
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

SELECT order_id, customer_id IS NULL AS no_customer, amount IS NOT NULL AS has_amount,
       qty + 1 AS q, COALESCE(customer_id, 'nobody') AS who, COALESCE(amount, 0) AS amt,
       COALESCE(qty, -1) AS qn
FROM orders;
