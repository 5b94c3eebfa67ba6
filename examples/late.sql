-- Late rows, the SQL twin of late.yaml: bids counted in 10 s tumbling windows while their event
-- times jitter by up to 10 s, far more than the watermark's 1 s bound. A bid whose window has
-- already fired when it arrives is late: the window's LATE_OUTPUT names a stream of those rows,
-- which the second INSERT writes to its own files instead of dropping them.
-- `SET 'table.exec.emit.allow-lateness' = '5 s';` would let windows take late rows (and fire
-- again) for 5 s after they fired; only rows later than that would be in `late_bids`.
--   wire run examples/late.sql
CREATE TABLE bids (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '500k', 'seed' = '1',
        'out_of_order_ms' = '10000');

CREATE TABLE counts WITH ('connector' = 'filesystem', 'path' = './wire-output/late/counts', 'format' = 'jsonl');
CREATE TABLE late WITH ('connector' = 'filesystem', 'path' = './wire-output/late/late_bids', 'format' = 'jsonl');

INSERT INTO counts
SELECT window_start, window_end, count(*) AS bids
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND,
  LATE_OUTPUT => 'late_bids'))
GROUP BY window_start, window_end;

INSERT INTO late SELECT * FROM late_bids;
