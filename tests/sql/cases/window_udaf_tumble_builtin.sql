-- weighted_avg(price, qty) of examples/operators/usd-udf as built-in SQL, in a TUMBLE window: what tests/sql/udf/weighted_avg_tumble.sql must give (sql_udf::a_wasm_aggregate_gives_what_flink_gives_for_the_same_sums).
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

SELECT customer_id, window_start, window_end,
       SUM(price * qty) / SUM(qty) AS wavg, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
WHERE qty < 1000 AND price IS NOT NULL
GROUP BY customer_id, window_start, window_end;
