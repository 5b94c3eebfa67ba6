-- Nexmark q3: local item suggestion; sellers in OR, ID or CA of category-10 auctions.
CREATE TABLE auction (
  id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
  date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'auction', 'events' = '1M', 'seed' = '1');

CREATE TABLE person (
  id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR,
  state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR
) WITH ('connector' = 'nexmark', 'stream' = 'person', 'events' = '1M', 'seed' = '1');

CREATE TABLE nexmark_q3 WITH ('connector' = 'filesystem', 'path' = './wire-output/q3', 'format' = 'json');

INSERT INTO nexmark_q3
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
