-- Nexmark q8: monitor new users; persons who opened an auction in the 10 s window they registered in.
-- Persons cover event time faster than auctions: aligned, their windows do not pile up in the join.
SET 'watermark_alignment' = '10s';
CREATE TABLE person (
  id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR,
  state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'person', 'events' = '1M', 'seed' = '1');

CREATE TABLE auction (
  id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'auction', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q8 WITH ('connector' = 'filesystem', 'path' = './wire-output/q8', 'format' = 'json');

INSERT INTO nexmark_q8
SELECT P.id, P.name, P.window_start AS starttime
FROM (
  SELECT id, name, window_start, window_end, count(*) AS registrations
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start, window_end, count(*) AS auctions
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end;
