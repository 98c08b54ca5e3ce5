-- The Wasm function usd (examples/operators/usd-udf) in a WHERE and a SELECT: its rows must be Flink's for the same expression in built-in SQL (cases/udf_usd_builtin.golden).
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

CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR 'usd_udf.wasm';

SELECT order_id,
       usd(amount, currency) AS amount_usd,
       usd(amount, currency) > 10 AS big
FROM events
WHERE currency <> 'JPY'
  AND usd(amount, 'EUR') > 2;
