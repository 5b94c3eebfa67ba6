-- Nexmark q13: each bid joined with a static side table (a temporal, or lookup, join).
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE side_input (
  `key` BIGINT NOT NULL, `value` VARCHAR NOT NULL
) WITH ('connector' = 'filesystem', 'path' = 'examples/data/side_input.csv', 'format' = 'csv');

CREATE TABLE nexmark_q13 WITH ('connector' = 'filesystem', 'path' = './wire-output/q13', 'format' = 'json');

INSERT INTO nexmark_q13
SELECT B.auction, B.bidder, B.price, B.date_time, S.`value`
FROM bid AS B
JOIN side_input FOR SYSTEM_TIME AS OF B.date_time AS S ON MOD(B.auction, 10000) = S.`key`;
