-- Nexmark q9: the winning bid of each auction: its highest bid made while it was open, the
-- earliest of equal ones (an interval join, then a top-1; an update stream).
CREATE TABLE auction (
  id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'auction', 'events' = '500k', 'seed' = '1');

CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '500k', 'seed' = '1');

CREATE TABLE nexmark_q9 WITH ('connector' = 'filesystem', 'path' = './wire-output/q9', 'format' = 'json');

INSERT INTO nexmark_q9
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category,
  extra, auction, bidder, price, channel, url, bid_date_time, bid_extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY bid.price DESC, bid.date_time ASC) AS rn
  FROM auction AS A JOIN bid AS bid
    ON A.id = bid.auction AND bid.date_time BETWEEN A.date_time AND A.expires
)
WHERE rn <= 1;
