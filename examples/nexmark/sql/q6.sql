-- Nexmark q6: average selling price by seller; per seller, the average final price of their
-- last 10 closed auctions, emitted for each auction as it closes.
-- The reference text orders by the bid's time and frames `10 PRECEDING AND CURRENT ROW` (11 rows)
-- over an update stream Flink cannot run; here the closing prices are ordered by the auction's
-- close (`expires`) and the frame is the last 10 rows, as in the YAML twin (q6.yaml). The OVER
-- aggregate settles each auction's maximum once the watermark passes its `expires`.
-- Auctions (3 of every 50 events) run ahead of bids in event time: aligned, they do not pile up in the join.
SET 'watermark_alignment' = '10s';
CREATE TABLE auction (
  id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'auction', 'events' = '1M', 'seed' = '1');

CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q6 WITH ('connector' = 'filesystem', 'path' = './wire-output/q6', 'format' = 'json');

CREATE TEMPORARY VIEW closed AS
SELECT A.id, A.seller, A.expires, max(B.price) AS final
FROM auction AS A JOIN bid AS B
  ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
GROUP BY A.id, A.seller, A.expires;

INSERT INTO nexmark_q6
SELECT seller, expires,
  AVG(final) OVER (PARTITION BY seller ORDER BY expires ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg,
  COUNT(final) OVER (PARTITION BY seller ORDER BY expires ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS count
FROM closed;
