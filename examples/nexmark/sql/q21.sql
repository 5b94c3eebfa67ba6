-- Nexmark q21: add a channel id, from the channel's name or from the URL's channel_id.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q21 WITH ('connector' = 'filesystem', 'path' = './wire-output/q21', 'format' = 'json');

INSERT INTO nexmark_q21
SELECT auction, bidder, price, channel, channel_id
FROM (
  SELECT auction, bidder, price, channel,
    CASE
      WHEN LOWER(channel) = 'apple' THEN '0'
      WHEN LOWER(channel) = 'google' THEN '1'
      WHEN LOWER(channel) = 'facebook' THEN '2'
      WHEN LOWER(channel) = 'baidu' THEN '3'
      ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
    END AS channel_id
  FROM bid
)
WHERE channel_id IS NOT NULL;
