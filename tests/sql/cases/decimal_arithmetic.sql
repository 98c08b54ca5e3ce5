-- DECIMAL arithmetic: result precision and scale as Flink derives them; 100.005 rounds half up to 100.01.
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

SELECT order_id, amount, amount + 1 AS plus_int, amount - 0.005 AS minus_dec, amount * 2 AS times_int,
       amount * amount AS squared, amount / 3 AS div_int, amount / 0.7 AS div_dec, -amount AS neg
FROM orders;
