-- DATE_FORMAT, EXTRACT, FLOOR/CEIL(… TO unit), TIMESTAMPDIFF over TIMESTAMP_LTZ(3) in UTC.
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

SELECT order_id, DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss.SSS') AS f1, DATE_FORMAT(ts, 'yy/M/d ''at'' H') AS f2,
       EXTRACT(YEAR FROM ts) AS y, EXTRACT(MONTH FROM ts) AS mo, EXTRACT(DAY FROM ts) AS d,
       EXTRACT(HOUR FROM ts) AS h, EXTRACT(MINUTE FROM ts) AS mi, EXTRACT(SECOND FROM ts) AS s,
       FLOOR(ts TO MINUTE) AS fm, CEIL(ts TO MINUTE) AS cm, FLOOR(ts TO HOUR) AS fh, FLOOR(ts TO DAY) AS fd,
       FLOOR(ts TO MONTH) AS fmo, CEIL(ts TO YEAR) AS cy,
       TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(1700000000000, 3), ts) AS since_s,
       TIMESTAMPDIFF(MINUTE, ts, TO_TIMESTAMP_LTZ(1699990000000, 3)) AS back_min
FROM events;
