-- Nexmark q12: processing-time windows; bids per bidder per 10 s window of wall-clock time.
-- The windows follow the machine's clock, not `date_time`, so the rows differ between runs;
-- per bidder, the counts always add up to the bidder's bids.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  p_time AS PROCTIME(),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q12 WITH ('connector' = 'filesystem', 'path' = './wire-output/q12', 'format' = 'json');

INSERT INTO nexmark_q12
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
