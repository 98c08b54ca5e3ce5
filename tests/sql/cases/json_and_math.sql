-- JSON_VALUE over JSON text, ABS over each numeric type.
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
       JSON_VALUE(CONCAT('{"id":"', order_id, '","n":{"q":[', CAST(COALESCE(qty, 0) AS STRING), ',2]}}'), '$.n.q[0]') AS q0,
       JSON_VALUE(CONCAT('{"id":"', order_id, '"}'), '$.id') AS id,
       JSON_VALUE('{"a":{"b":true}}', '$.a.b') AS b,
       JSON_VALUE('{"a":[1]}', '$.a') AS not_scalar,
       JSON_VALUE('{"a":1}', '$.missing') AS missing,
       ABS(qty - 5) AS aq, ABS(amount - 10) AS aa, ABS(price - 3.0) AS ap
FROM events;
