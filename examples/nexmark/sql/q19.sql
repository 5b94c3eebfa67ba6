-- Nexmark q19: the ten highest bids of each auction (an update stream).
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '200k', 'seed' = '1');

CREATE TABLE nexmark_q19 WITH ('connector' = 'filesystem', 'path' = './wire-output/q19', 'format' = 'json');

INSERT INTO nexmark_q19
SELECT * FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 10;
