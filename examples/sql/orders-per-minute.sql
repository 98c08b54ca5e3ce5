-- Orders from the generator (Flink's `datagen` connector and its options), counted and summed
-- per customer and minute of event time, printed with each row's kind.
--   sluice sql examples/sql/orders-per-minute.sql
CREATE TABLE orders (
  order_id    BIGINT,
  customer_id INT,
  amount      DECIMAL(10, 2),
  event_ts    BIGINT,
  ts AS TO_TIMESTAMP_LTZ(event_ts, 3),                -- the event time, from epoch milliseconds
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (
  'connector' = 'datagen',
  'number-of-rows' = '${ROWS:-120000}',
  'rows-per-second' = '${RATE:-100000}',
  'fields.order_id.kind' = 'sequence',
  'fields.order_id.start' = '1',
  'fields.order_id.end' = '1000000000',
  'fields.customer_id.min' = '1',
  'fields.customer_id.max' = '20',
  'fields.amount.min' = '0.01',
  'fields.amount.max' = '500',
  'fields.event_ts.kind' = 'sequence',                -- one order per millisecond
  'fields.event_ts.start' = '1700000040000',
  'fields.event_ts.end' = '1800000000000'
);

CREATE TABLE per_minute (
  customer_id INT,
  minute      TIMESTAMP(3),
  orders      BIGINT,
  revenue     DECIMAL(38, 2)
) WITH ('connector' = 'print');

INSERT INTO per_minute
SELECT customer_id, window_start, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end, customer_id;
