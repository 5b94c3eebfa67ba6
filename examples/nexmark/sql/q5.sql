-- Nexmark q5: hot items; the auctions with the most bids in each 10 s window, every 2 s.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q5 WITH ('connector' = 'filesystem', 'path' = './wire-output/q5', 'format' = 'json');

CREATE TEMPORARY VIEW auction_bids AS
SELECT auction, window_start, window_end, count(*) AS num
FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;

INSERT INTO nexmark_q5
SELECT auction, num, window_start, window_end
FROM (
  SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rk
  FROM auction_bids
)
WHERE rk <= 1;
