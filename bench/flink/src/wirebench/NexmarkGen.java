package wirebench;

/**
 * A line-by-line port of Wire's Nexmark generator (core/src/nexmark.rs): persons, auctions and
 * bids, with the default configuration (50 events per epoch: 1 person, 3 auctions, 46 bids;
 * 10,000 events per second of event time from 1,700,000,000,000 ms; average sizes 200, 500 and
 * 100 bytes; no jitter).
 *
 * <p>Event {@code n} is a pure function of (seed, n): each event seeds its own SplitMix64 stream
 * from {@code mix64(mix64(seed) ^ n)}. {@link #kind} tells the kinds apart without generating
 * anything, as Wire's source does for the events of other streams. Checked byte for byte against
 * the persons, auctions and bids Wire writes by `bench/flink/compare.sh --check`.
 */
public final class NexmarkGen {
    static final long FIRST_PERSON_ID = 1000;
    static final long FIRST_AUCTION_ID = 1000;
    static final long FIRST_CATEGORY_ID = 10;
    static final long NUM_CATEGORIES = 5;
    static final long PERSON_PROPORTION = 1;
    static final long AUCTION_PROPORTION = 3;
    static final long TOTAL_PROPORTION = 50;
    static final long FIRST_EVENT_TIME_MS = 1_700_000_000_000L;
    static final long EVENTS_PER_SECOND = 10_000;
    static final int AVG_PERSON_BYTES = 200;
    static final int AVG_AUCTION_BYTES = 500;
    static final int AVG_BID_BYTES = 100;
    static final long HOT_AUCTION_RATIO = 2;
    static final long HOT_SELLERS_RATIO = 4;
    static final long HOT_BIDDERS_RATIO = 4;
    static final long NUM_IN_FLIGHT_AUCTIONS = 100;
    static final long NUM_ACTIVE_PEOPLE = 1000;
    static final long PERSON_ID_LEAD = 10;
    static final long AUCTION_ID_LEAD = 10;
    static final long HOT_AUCTION_GROUP = 100;
    static final long HOT_SELLER_GROUP = 100;
    static final long HOT_BIDDER_GROUP = 100;
    /** Events until NUM_IN_FLIGHT_AUCTIONS more auctions exist: 100 * 50 / 3. */
    static final long AUCTION_EVENTS_AHEAD = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
    static final int NUMERIC_FIELD_BYTES = 8;
    static final String[] US_STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
    static final String[] US_CITIES = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
        "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"};
    static final String[] FIRST_NAMES = {"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie",
        "Sarah", "Deiter", "Walter"};
    static final String[] LAST_NAMES = {"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith",
        "Jones", "Noris"};
    static final String[] NAMED_CHANNELS = {"apple", "google", "facebook", "baidu"};
    static final String URL_PREFIX = "https://www.nexmark.com/";
    static final String URL_SUFFIX = "item.htm?query=1";
    static final double PRICE_TIE_GUARD = 1e-4;

    // std::f64::consts, to full precision (Java parses them to the same nearest doubles).
    static final double LN_2 = 0.693147180559945309417232121458176568;
    static final double LN_10 = 2.30258509299404568401799145468436421;
    static final double LOG2_10 = 3.32192809488736234787031642948865;
    static final double ROUNDING_SHIFT = (double) (3L << 51);
    static final double[] EXP2_256THS = new double[256];
    static final long[] POWERS_OF_26 = new long[12];

    static {
        EXP2_256THS[0] = 1.0;
        for (int j = 1; j < 256; j++) {
            double r = (double) j / 256.0 * LN_2;
            double term = 1.0, sum = 1.0;
            for (int k = 1; k < 25; k++) {
                term *= r / (double) k;
                sum += term;
            }
            EXP2_256THS[j] = sum;
        }
        POWERS_OF_26[0] = 1;
        for (int i = 1; i < 12; i++) {
            POWERS_OF_26[i] = POWERS_OF_26[i - 1] * 26;
        }
    }

    private final long rngKey;
    /** The SplitMix64 state of the event being generated. */
    private long state;
    /** Reused while building strings. */
    private final StringBuilder sb = new StringBuilder(128);
    private final char[] letters = new char[12];

    public NexmarkGen(long seed) {
        this.rngKey = mix64(seed);
    }

    /** The event kinds, as Wire's `EventKind`. */
    public static final int PERSON = 0;
    public static final int AUCTION = 1;
    public static final int BID = 2;

    public static boolean isBid(long n) {
        return n % TOTAL_PROPORTION >= PERSON_PROPORTION + AUCTION_PROPORTION;
    }

    /** {@link #PERSON}, {@link #AUCTION} or {@link #BID}, by {@code n} modulo the total proportion. */
    public static int kind(long n) {
        long offset = n % TOTAL_PROPORTION;
        if (offset < PERSON_PROPORTION) {
            return PERSON;
        }
        return offset < PERSON_PROPORTION + AUCTION_PROPORTION ? AUCTION : BID;
    }

    /** Stream name (`person`, `auction`, `bid`, or a plural) to kind. */
    public static int kindOf(String stream) {
        switch (stream) {
            case "person": case "persons": case "people": return PERSON;
            case "auction": case "auctions": return AUCTION;
            case "bid": case "bids": return BID;
            default: throw new IllegalArgumentException("unknown nexmark stream " + stream);
        }
    }

    /** Event {@code n} of its kind: a {@link Person}, an {@link Auction} or a {@link Bid}. */
    public Object event(long n) {
        switch (kind(n)) {
            case PERSON: return person(n);
            case AUCTION: return auction(n);
            default: return bid(n);
        }
    }

    /** The last person id (base 0) created at or before event {@code n}. */
    static long lastBase0PersonId(long n) {
        long epoch = n / TOTAL_PROPORTION;
        long offset = Math.min(n % TOTAL_PROPORTION, PERSON_PROPORTION - 1);
        return epoch * PERSON_PROPORTION + offset;
    }

    /** The last auction id (base 0) created at or before event {@code n}; 0 before the first. */
    static long lastBase0AuctionId(long n) {
        long epoch = n / TOTAL_PROPORTION;
        long offset = n % TOTAL_PROPORTION;
        if (offset < PERSON_PROPORTION) {
            epoch -= 1;
            offset = AUCTION_PROPORTION - 1;
        } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
            offset = AUCTION_PROPORTION - 1;
        } else {
            offset -= PERSON_PROPORTION;
        }
        return Math.max(0, epoch * AUCTION_PROPORTION + offset);
    }

    /** A cold person id (base 0), as next_base0_person_id. */
    private long nextBase0PersonId(long n) {
        long numPeople = lastBase0PersonId(n) + 1;
        long active = Math.min(numPeople, NUM_ACTIVE_PEOPLE);
        return numPeople - active + below(active + PERSON_ID_LEAD);
    }

    /** Person number {@code n}; {@code n} must be a person. */
    public Person person(long n) {
        state = mix64(rngKey ^ n);
        Person p = new Person();
        p.dateTime = eventTimeMs(n);
        p.id = FIRST_PERSON_ID + lastBase0PersonId(n);
        p.name = pick(FIRST_NAMES) + " " + pick(LAST_NAMES);
        // push_email_address
        sb.setLength(0);
        appendLetters(7);
        sb.append('@');
        appendLetters(5);
        sb.append(".com");
        p.emailAddress = sb.toString();
        // push_credit_card
        sb.setLength(0);
        for (int group = 0; group < 4; group++) {
            if (group > 0) {
                sb.append(' ');
            }
            long digits = below(10_000);
            for (long scale = 1000; scale > 0; scale /= 10) {
                sb.append((char) ('0' + (digits / scale) % 10));
            }
        }
        p.creditCard = sb.toString();
        p.city = pick(US_CITIES);
        p.state = pick(US_STATES);
        int size = 2 * NUMERIC_FIELD_BYTES + p.name.length() + p.emailAddress.length()
                + p.creditCard.length() + p.city.length() + p.state.length();
        p.extra = extra(size, AVG_PERSON_BYTES);
        return p;
    }

    /** Auction number {@code n}; {@code n} must be an auction. */
    public Auction auction(long n) {
        state = mix64(rngKey ^ n);
        Auction a = new Auction();
        a.dateTime = eventTimeMs(n);
        a.id = FIRST_AUCTION_ID + lastBase0AuctionId(n);
        // next_seller
        long seller;
        if (below(HOT_SELLERS_RATIO) > 0) {
            seller = (lastBase0PersonId(n) / HOT_SELLER_GROUP) * HOT_SELLER_GROUP;
        } else {
            seller = nextBase0PersonId(n);
        }
        a.seller = FIRST_PERSON_ID + seller;
        a.category = FIRST_CATEGORY_ID + below(NUM_CATEGORIES);
        a.initialBid = nextPrice();
        // auction_length_ms: uniform in [1, 2 * horizon], the horizon being the event time until
        // NUM_IN_FLIGHT_AUCTIONS more auctions exist.
        long horizonMs = eventTimeMs(n + AUCTION_EVENTS_AHEAD) - eventTimeMs(n);
        long bound = Math.max(horizonMs * 2, 1);
        a.expires = a.dateTime + 1 + below(bound);
        sb.setLength(0);
        appendLetters(20);
        a.itemName = sb.toString();
        sb.setLength(0);
        appendLetters(100);
        a.description = sb.toString();
        a.reserve = a.initialBid + nextPrice();
        int size = 7 * NUMERIC_FIELD_BYTES + a.itemName.length() + a.description.length();
        a.extra = extra(size, AVG_AUCTION_BYTES);
        return a;
    }

    private String pick(String[] items) {
        return items[(int) below(items.length)];
    }

    /** push_extra: padding so that {@code size} plus its length averages {@code avg}. */
    private String extra(int size, int avg) {
        if (size >= avg) {
            return "";
        }
        int target = avg - size;
        int delta = (target + 2) / 5;
        int spread = delta == 0 ? 0 : (int) below(2L * delta);
        sb.setLength(0);
        appendLetters(target - delta + spread);
        return sb.toString();
    }

    public static long eventTimeMs(long n) {
        return FIRST_EVENT_TIME_MS + Math.floorDiv(n * 1000, EVENTS_PER_SECOND);
    }

    /** Bid number {@code n}; {@code n} must be a bid ({@link #isBid}). */
    public Bid bid(long n) {
        Bid bid = new Bid();
        fill(n, bid);
        return bid;
    }

    public void fill(long n, Bid bid) {
        long epoch = n / TOTAL_PROPORTION;
        state = mix64(rngKey ^ n);
        long dateTime = eventTimeMs(n);
        // next_bid_auction
        long lastAuction = epoch * AUCTION_PROPORTION + (AUCTION_PROPORTION - 1);
        long auction;
        if (below(HOT_AUCTION_RATIO) > 0) {
            auction = (lastAuction / HOT_AUCTION_GROUP) * HOT_AUCTION_GROUP;
        } else {
            long max = lastAuction;
            long min = Math.max(0, max - NUM_IN_FLIGHT_AUCTIONS);
            auction = min + below(max - min + 1 + AUCTION_ID_LEAD);
        }
        // next_bidder
        long lastPerson = epoch * PERSON_PROPORTION;
        long bidder;
        if (below(HOT_BIDDERS_RATIO) > 0) {
            bidder = (lastPerson / HOT_BIDDER_GROUP) * HOT_BIDDER_GROUP + 1;
        } else {
            long numPeople = lastPerson + 1;
            long active = Math.min(numPeople, NUM_ACTIVE_PEOPLE);
            bidder = numPeople - active + below(active + PERSON_ID_LEAD);
        }
        long price = nextPrice();
        // push_channel_and_url
        long numbered = below(10) < 4 ? -1 : below(10_000);
        sb.setLength(0);
        sb.append(URL_PREFIX);
        for (int i = 0; i < 3; i++) {
            appendLetters(5);
            sb.append('/');
        }
        sb.append(URL_SUFFIX);
        String channel;
        if (numbered < 0) {
            channel = NAMED_CHANNELS[(int) below(NAMED_CHANNELS.length)];
        } else {
            sb.append("&channel_id=").append(numbered);
            channel = "channel-" + numbered;
        }
        String url = sb.toString();
        int size = 4 * NUMERIC_FIELD_BYTES + channel.length() + url.length();
        String extra = extra(size, AVG_BID_BYTES);
        bid.auction = FIRST_AUCTION_ID + auction;
        bid.bidder = FIRST_PERSON_ID + bidder;
        bid.price = price;
        bid.channel = channel;
        bid.url = url;
        bid.dateTime = dateTime;
        bid.extra = extra;
    }

    static long mix64(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    private long nextU64() {
        state += 0x9e3779b97f4a7c15L;
        return mix64(state);
    }

    /** High 64 bits of the unsigned 128-bit product. */
    static long unsignedMultiplyHigh(long a, long b) {
        return Math.multiplyHigh(a, b) + ((a >> 63) & b) + ((b >> 63) & a);
    }

    /** Uniform in [0, bound) by multiply-high; bound is small and positive here. */
    private long below(long bound) {
        return unsignedMultiplyHigh(nextU64(), bound);
    }

    /** Letters as push_letters: a fresh draw per 12 letters, each draw giving base-26 digits. */
    private void appendLetters(int count) {
        int left = count;
        while (left > 0) {
            int take = Math.min(left, 12);
            long bits = nextU64();
            for (int i = 0; i < take; i++) {
                long fraction = bits * POWERS_OF_26[i];
                letters[i] = (char) ('a' + unsignedMultiplyHigh(fraction, 26));
            }
            sb.append(letters, 0, take);
            left -= take;
        }
    }

    private long nextPrice() {
        long draw = nextU64() >>> 11;
        double approx = priceEstimate(draw);
        double shifted = approx + ROUNDING_SHIFT;
        long nearest = (Double.doubleToRawLongBits(shifted) & ((1L << 52) - 1)) - (1L << 51);
        double offBy = approx - (shifted - ROUNDING_SHIFT);
        if (0.5 - Math.abs(offBy) > PRICE_TIE_GUARD) {
            return nearest;
        }
        return exactPrice((double) draw * (1.0 / (double) (1L << 53)) * 6.0);
    }

    static double priceEstimate(long draw) {
        double t = (double) draw * (6.0 * 256.0 * LOG2_10 / (double) (1L << 53));
        double shifted = t + ROUNDING_SHIFT;
        long k = Double.doubleToRawLongBits(shifted) & 0xffff;
        double g = (t - (shifted - ROUNDING_SHIFT)) * (LN_2 / 256.0);
        double g2 = g * g;
        double series = (1.0 + g) + g2 * ((1.0 / 2.0 + g * (1.0 / 6.0)) + g2 * (1.0 / 24.0));
        double scale = Double.longBitsToDouble(
                Double.doubleToRawLongBits(EXP2_256THS[(int) (k & 255)]) + ((k >> 8) << 52));
        return scale * 100.0 * series;
    }

    static long exactPrice(double x) {
        return Math.round(pow10(x) * 100.0);
    }

    static double pow10(double x) {
        double y = x * LN_10;
        double whole = Math.floor(y / LN_2);
        double r = y - whole * LN_2;
        double term = 1.0, sum = 1.0;
        for (int k = 1; k < 20; k++) {
            term *= r / (double) k;
            sum += term;
        }
        return sum * (double) (1L << (int) whole);
    }
}
