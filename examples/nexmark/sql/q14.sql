-- Nexmark q14: calculation; prices in range, a time-of-day bucket, and a user function
-- (count_char, built in) counting the 'c's in extra.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '10M', 'seed' = '1');

CREATE TABLE nexmark_q14 WITH ('connector' = 'filesystem', 'path' = './wire-output/q14', 'format' = 'json');

INSERT INTO nexmark_q14
SELECT
  auction,
  bidder,
  price * 0.908 AS price,
  CASE
    WHEN EXTRACT(HOUR FROM date_time) >= 8 AND EXTRACT(HOUR FROM date_time) <= 18 THEN 'dayTime'
    WHEN EXTRACT(HOUR FROM date_time) <= 6 OR EXTRACT(HOUR FROM date_time) >= 20 THEN 'nightTime'
    ELSE 'otherTime'
  END AS bid_time_type,
  date_time,
  extra,
  count_char(extra, 'c') AS c_counts
FROM bid
WHERE price * 0.908 > 1000000 AND price * 0.908 < 50000000;
