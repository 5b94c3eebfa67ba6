-- Nexmark q0: pass-through. Every bid, unchanged, into a blackhole.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '10M', 'seed' = '1');

CREATE TABLE discard_sink WITH ('connector' = 'blackhole');

INSERT INTO discard_sink SELECT auction, bidder, price, channel, url, date_time, extra FROM bid;
