-- Nested CASE and COALESCE, CASE over strings of one length, arithmetic in THEN.
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
SELECT order_id,
       CASE WHEN status = 'COMPLETED' THEN CASE WHEN amount > 100 THEN 'big' ELSE 'sml' END ELSE 'n/a' END AS bucket,
       COALESCE(CASE WHEN qty > 0 THEN qty * 10 END, 0) AS tens,
       CASE currency WHEN 'EUR' THEN amount * 1.1 WHEN 'GBP' THEN amount * 1.25 ELSE amount END AS usd
FROM orders;
