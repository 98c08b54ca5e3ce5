-- SELECT * lists the physical and computed columns in declaration order; string casts and literals.
CREATE TABLE orders (
  order_id    STRING,
  status      STRING,
  qty         INT,
  doubled AS qty * 2
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/orders.jsonl',
  'format' = 'json'
);

SELECT *, CAST('12' AS INT) + qty AS plus_twelve, CAST(' 2.50 ' AS DECIMAL(5, 2)) AS parsed, status < 'P' AS before_p
FROM orders;
