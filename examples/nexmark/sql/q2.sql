-- Nexmark q2: selection; bids on every 123rd auction, as CSV on standard output.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
  date_time TIMESTAMP(3), extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'bid', 'events' = '1M', 'seed' = '1');

CREATE TABLE print_sink WITH ('connector' = 'print', 'format' = 'csv');

INSERT INTO print_sink
SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
