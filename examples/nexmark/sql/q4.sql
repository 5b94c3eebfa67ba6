-- Nexmark q4: the average final price of the auctions of each category. A bid counts when it
-- was made while its auction was open (an interval join).
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

CREATE TABLE nexmark_q4 WITH ('connector' = 'filesystem', 'path' = './wire-output/q4', 'format' = 'json');

CREATE TEMPORARY VIEW final_price AS
SELECT A.id, A.category, max(B.price) AS final
FROM auction AS A JOIN bid AS B
  ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
GROUP BY A.id, A.category;

INSERT INTO nexmark_q4
SELECT category, avg(final) AS avg_final
FROM final_price
GROUP BY category;
