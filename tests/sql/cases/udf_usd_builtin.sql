-- usd(amount, currency) of examples/operators/usd-udf as built-in SQL: what tests/sql/udf/usd.sql must give (sql::a_wasm_function_gives_what_flink_gives_for_the_same_expression).
CREATE TABLE events (
  order_id    STRING,
  customer_id STRING,
  amount      DECIMAL(10, 2),
  currency    STRING,
  qty         INT,
  price       DOUBLE,
  event_ts    BIGINT,
  ts AS TO_TIMESTAMP_LTZ(event_ts, 3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'filesystem',
  'path' = '${DATA}/events.jsonl',
  'format' = 'json'
);

SELECT order_id,
       CAST(amount * CASE currency WHEN 'USD' THEN 1.00 WHEN 'EUR' THEN 1.10 WHEN 'GBP' THEN 1.25 END AS DECIMAL(12, 2)) AS amount_usd,
       CAST(amount * CASE currency WHEN 'USD' THEN 1.00 WHEN 'EUR' THEN 1.10 WHEN 'GBP' THEN 1.25 END AS DECIMAL(12, 2)) > 10 AS big
FROM events
WHERE currency <> 'JPY'
  AND CAST(amount * 1.10 AS DECIMAL(12, 2)) > 2;
