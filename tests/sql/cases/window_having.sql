-- HAVING and expressions over group keys and aggregates; an aggregate used twice.
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

SELECT UPPER(customer_id) AS who, window_start, COUNT(*) + 1 AS n1, SUM(qty) * 2 AS q2,
       CASE WHEN SUM(amount) > 10 THEN 'big' ELSE 'small' END AS size, COUNT(*)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '20' SECOND))
WHERE currency <> 'JPY'
GROUP BY window_start, window_end, UPPER(customer_id)
HAVING COUNT(*) > 1;
