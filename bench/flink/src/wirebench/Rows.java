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

    /** q11: bids of one bidder in one session. */
    public static class Session {
        public long bidder;
        public long windowStart;
        public long windowEnd;
        public long bidCount;

        public Session() {}

        public Session(long bidder, long windowStart, long windowEnd, long bidCount) {
            this.bidder = bidder;
            this.windowStart = windowStart;
            this.windowEnd = windowEnd;
            this.bidCount = bidCount;
        }

        public String toJson() {
            StringBuilder sb = new StringBuilder(100);
            sb.append("{\"bidder\":").append(bidder).append(",\"window_start\":");
            Json.timestamp(sb, windowStart);
            sb.append(",\"window_end\":");
            Json.timestamp(sb, windowEnd);
            return sb.append(",\"bid_count\":").append(bidCount).append('}').toString();
        }
    }

    /** q3: a western seller of a category-10 auction (also the join's kept person, with id 0). */
    public static class Q3Row {
        public String name;
        public String city;
        public String state;
        public long id;

        public Q3Row() {}

        public Q3Row(String name, String city, String state, long id) {
            this.name = name;
            this.city = city;
            this.state = state;
            this.id = id;
        }

        public String toJson() {
            StringBuilder sb = new StringBuilder(100);
            sb.append("{\"name\":");
            Json.string(sb, name);
            sb.append(",\"city\":");
            Json.string(sb, city);
            sb.append(",\"state\":");
            Json.string(sb, state);
            return sb.append(",\"id\":").append(id).append('}').toString();
        }
    }

    /** q8: a person's registrations in one tumbling window. */
    public static class NewPerson {
        public long id;
        public String name;
        public long windowStart;
        public long windowEnd;
        public long registrations;

        public NewPerson() {}
    }

    /** q8: a seller's auctions in one tumbling window. */
    public static class NewSeller {
        public long seller;
        public long windowStart;
        public long windowEnd;
        public long auctions;

        public NewSeller() {}

        public NewSeller(long seller, long windowStart, long windowEnd, long auctions) {
            this.seller = seller;
            this.windowStart = windowStart;
            this.windowEnd = windowEnd;
            this.auctions = auctions;
        }
    }

    /** q8: a person who opened an auction in the window they registered in. */
    public static class Q8Row {
        public long id;
        public String name;
        public long starttime;

        public Q8Row() {}

        public Q8Row(long id, String name, long starttime) {
            this.id = id;
            this.name = name;
            this.starttime = starttime;
        }

        public String toJson() {
            StringBuilder sb = new StringBuilder(100);
            sb.append("{\"id\":").append(id).append(",\"name\":");
            Json.string(sb, name);
            sb.append(",\"starttime\":");
            Json.timestamp(sb, starttime);
            return sb.append('}').toString();
        }
    }

    /** q4's join state of an auction: what the bids are matched against, and their maximum. */
    public static class OpenAuction {
        public long category;
        public long dateTime;
        public long expires;
        public boolean hasMax;
        public long max;

        public OpenAuction() {}

        public OpenAuction(long category, long dateTime, long expires) {
            this.category = category;
            this.dateTime = dateTime;
            this.expires = expires;
        }
    }

    /** q4: a bid waiting for its auction. */
    public static class TimedPrice {
        public long time;
        public long price;

        public TimedPrice() {}

        public TimedPrice(long time, long price) {
            this.time = time;
            this.price = price;
        }
    }

    /** q4: an auction's maximum rose from `previous` (if `hadPrevious`) to `max`. */
    public static class MaxChange {
        public long auction;
        public long category;
        public boolean hadPrevious;
        public long previous;
        public long max;

        public MaxChange() {}

        public MaxChange(long auction, long category, boolean hadPrevious, long previous, long max) {
            this.auction = auction;
            this.category = category;
            this.hadPrevious = hadPrevious;
            this.previous = previous;
            this.max = max;
        }
    }

    /** q4's per-category totals of the auctions' current maxima. */
    public static class SumCount {
        public long sum;
        public long count;

        public SumCount() {}
    }

    /** q4: the current average of the maxima of one category. */
    public static class CategoryAverage {
        public long category;
        public double avgFinal;

        public CategoryAverage() {}

        public CategoryAverage(long category, double avgFinal) {
            this.category = category;
            this.avgFinal = avgFinal;
        }

        public String toJson() {
            return "{\"category\":" + category + ",\"avg_final\":" + Json.number(avgFinal) + "}";
        }
    }
}
