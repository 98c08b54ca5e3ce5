-- The Wasm aggregate weighted_avg (examples/operators/usd-udf) in a TUMBLE window beside COUNT(*): its rows must be Flink's for the same sums in built-in SQL (cases/window_udaf_tumble_builtin.golden).
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

CREATE FUNCTION weighted_avg AS 'weighted_avg' LANGUAGE WASM USING JAR 'usd_udf.wasm';

SELECT customer_id, window_start, window_end,
       weighted_avg(price, qty) AS wavg, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
WHERE qty < 1000 AND price IS NOT NULL
GROUP BY customer_id, window_start, window_end;
