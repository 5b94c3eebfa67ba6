-- Nexmark q10: log every bid to files partitioned by the hour of its event time.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1',
        'events_per_second' = '100');

CREATE TABLE nexmark_q10 WITH (
  'connector' = 'filesystem', 'path' = './wire-output/q10', 'format' = 'json',
  'partition_by' = 'date_format(date_time, ''yyyy-MM-dd-HH'')'
);

INSERT INTO nexmark_q10
SELECT auction, bidder, price, date_time, extra FROM bid;
