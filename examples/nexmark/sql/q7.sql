-- Nexmark q7: highest bid; the bids with the highest price in each 10 s window.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q7 WITH ('connector' = 'filesystem', 'path' = './wire-output/q7', 'format' = 'json');

INSERT INTO nexmark_q7
SELECT auction, price, bidder, date_time, extra, window_end
FROM (
  SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rk
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
)
WHERE rk <= 1;
