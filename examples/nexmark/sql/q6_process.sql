-- Nexmark q6 with Wire's process functions: the SQL twin of q6.yaml, operator for operator.
-- `TABLE(f(TABLE t PARTITION BY k, name => value, ...))` runs the registered keyed function `f`
-- (docs/streaming.md#user-written-operators), as Flink calls a process table function:
-- `max_until` keeps each auction's highest bid and emits it once the watermark passes the
-- auction's `expires`; `last_n_average` keeps the last 10 closing prices per seller (ordered by
-- closing time) and emits their average for each. q6.sql is the same query with OVER instead.
-- Auctions (3 of every 50 events) run ahead of bids in event time: aligned, they do not pile up in the join.
SET 'watermark_alignment' = '10s';
CREATE TABLE auction (
  id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'auction', 'events' = '1M', 'seed' = '1');

CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE out WITH ('connector' = 'filesystem', 'path' = './wire-output/q6', 'format' = 'jsonl');

CREATE TEMPORARY VIEW bids_while_open AS
SELECT * FROM auction JOIN bid
  ON auction.id = bid.auction AND bid.date_time BETWEEN auction.date_time AND auction.expires;

CREATE TEMPORARY VIEW closed AS
SELECT * FROM TABLE(MAX_UNTIL(TABLE bids_while_open PARTITION BY (id, seller),
  value => 'price', until => 'expires', output => 'final'));

INSERT INTO out
SELECT * FROM TABLE(LAST_N_AVERAGE(TABLE closed PARTITION BY seller,
  value => 'final', order => 'expires', n => 10));
