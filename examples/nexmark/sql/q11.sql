-- Nexmark q11: user sessions; bids per bidder in each session closed by 10 s without a bid.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q11 WITH ('connector' = 'filesystem', 'path' = './wire-output/q11', 'format' = 'json');

INSERT INTO nexmark_q11
SELECT bidder, window_start, window_end, count(*) AS bid_count
FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
