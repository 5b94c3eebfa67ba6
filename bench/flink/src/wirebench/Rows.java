package wirebench;

import java.util.ArrayList;

/** Output rows of the queries, as Flink POJOs, each with the jsonl form Wire writes. */
public final class Rows {
    private Rows() {}

    /** q1: a bid with its price in euros. */
    public static class BidEuro {
        public long auction;
        public long bidder;
        public double price;
        public String channel;
        public String url;
        public long dateTime;
        public String extra;

        public BidEuro() {}

        public String toJson() {
            StringBuilder sb = new StringBuilder(200);
            sb.append("{\"auction\":").append(auction).append(",\"bidder\":").append(bidder)
                    .append(",\"price\":").append(Json.number(price)).append(",\"channel\":");
            Json.string(sb, channel);
            sb.append(",\"url\":");
            Json.string(sb, url);
            sb.append(",\"date_time\":");
            Json.timestamp(sb, dateTime);
            sb.append(",\"extra\":");
            Json.string(sb, extra);
            return sb.append('}').toString();
        }
    }

    /** q2: auction and price. */
    public static class AuctionPrice {
        public long auction;
        public long price;

        public AuctionPrice() {}

        public String toJson() {
            return "{\"auction\":" + auction + ",\"price\":" + price + "}";
        }
    }

    /** q5: bids per auction in one hop window. */
    public static class AuctionCount {
        public long auction;
        public long num;
        public long windowStart;
        public long windowEnd;

        public AuctionCount() {}

        public AuctionCount(long auction, long num, long windowStart, long windowEnd) {
            this.auction = auction;
            this.num = num;
            this.windowStart = windowStart;
            this.windowEnd = windowEnd;
        }

        public String toJson() {
            StringBuilder sb = new StringBuilder(100);
            sb.append("{\"auction\":").append(auction).append(",\"num\":").append(num)
                    .append(",\"window_start\":");
            Json.timestamp(sb, windowStart);
            sb.append(",\"window_end\":");
            Json.timestamp(sb, windowEnd);
            return sb.append('}').toString();
        }
    }

    /** q5's second step: the rows tied at the highest count of one window. */
    public static class CountTies {
        public long max = -1;
        public ArrayList<AuctionCount> rows = new ArrayList<>();

        public CountTies() {}
    }

    /** q7: a highest bid of its 10 s window. */
    public static class Q7Row {
        public long auction;
        public long price;
        public long bidder;
        public long dateTime;
        public String extra;
        public long windowEnd;

        public Q7Row() {}

        public String toJson() {
            StringBuilder sb = new StringBuilder(200);
            sb.append("{\"auction\":").append(auction).append(",\"price\":").append(price)
                    .append(",\"bidder\":").append(bidder).append(",\"date_time\":");
            Json.timestamp(sb, dateTime);
            sb.append(",\"extra\":");
            Json.string(sb, extra);
            sb.append(",\"window_end\":");
            Json.timestamp(sb, windowEnd);
            return sb.append('}').toString();
        }
    }

    /** q7's accumulator: the highest price so far and the bids at it. */
    public static class BidTies {
        public long max = Long.MIN_VALUE;
        public ArrayList<Q7Row> rows = new ArrayList<>();

        public BidTies() {}
    }

    /** Keyed count: the running count of bids of one auction. */
    public static class KeyedCount {
        public long auction;
        public long num;

        public KeyedCount() {}

        public KeyedCount(long auction, long num) {
            this.auction = auction;
            this.num = num;
        }

        public String toJson() {
            return "{\"auction\":" + auction + ",\"num\":" + num + "}";
        }
    }
}
