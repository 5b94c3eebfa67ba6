package wirebench;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.Map;

/** Just enough JSON for flat rows: writing strings and timestamps as Wire's jsonl does, and
 * reading Wire's jsonl persons, auctions and bids back (flat objects of integers and strings). */
final class Json {
    private static final DateTimeFormatter RFC3339 =
            DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

    static void string(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }

    /** A double as Wire writes f64 in jsonl: plain digits, always with a fraction
     * (`2.0`, `542938.6`, `38515486.796000004`), never an exponent for these magnitudes. */
    static String number(double d) {
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            return "null";
        }
        String plain = new java.math.BigDecimal(Double.toString(d)).toPlainString();
        return plain.indexOf('.') < 0 ? plain + ".0" : plain;
    }

    static void timestamp(StringBuilder sb, long ms) {
        sb.append('"').append(RFC3339.format(Instant.ofEpochMilli(ms))).append('"');
    }

    /** Parses one line of Wire's jsonl bid output. */
    static Bid parseBid(String line) {
        Map<String, Object> row = parseFlat(line);
        Bid bid = new Bid();
        bid.auction = (Long) row.get("auction");
        bid.bidder = (Long) row.get("bidder");
        bid.price = (Long) row.get("price");
        bid.channel = (String) row.get("channel");
        bid.url = (String) row.get("url");
        bid.dateTime = millis(row.get("date_time"));
        bid.extra = (String) row.get("extra");
        return bid;
    }

    /** Parses one line of Wire's jsonl person output. */
    static Person parsePerson(String line) {
        Map<String, Object> row = parseFlat(line);
        Person p = new Person();
        p.id = (Long) row.get("id");
        p.name = (String) row.get("name");
        p.emailAddress = (String) row.get("email_address");
        p.creditCard = (String) row.get("credit_card");
        p.city = (String) row.get("city");
        p.state = (String) row.get("state");
        p.dateTime = millis(row.get("date_time"));
        p.extra = (String) row.get("extra");
        return p;
    }

    /** Parses one line of Wire's jsonl auction output. */
    static Auction parseAuction(String line) {
        Map<String, Object> row = parseFlat(line);
        Auction a = new Auction();
        a.id = (Long) row.get("id");
        a.itemName = (String) row.get("item_name");
        a.description = (String) row.get("description");
        a.initialBid = (Long) row.get("initial_bid");
        a.reserve = (Long) row.get("reserve");
        a.dateTime = millis(row.get("date_time"));
        a.expires = millis(row.get("expires"));
        a.seller = (Long) row.get("seller");
        a.category = (Long) row.get("category");
        a.extra = (String) row.get("extra");
        return a;
    }

    /** A timestamp field: epoch milliseconds, or an RFC 3339 string. */
    private static long millis(Object value) {
        return value instanceof Long ? (Long) value : Instant.parse((String) value).toEpochMilli();
    }

    /** A flat JSON object of integers and strings, as a map (the only shapes Nexmark rows have). */
    static Map<String, Object> parseFlat(String line) {
        Map<String, Object> row = new HashMap<>();
        int i = line.indexOf('{') + 1;
        int n = line.length();
        while (i < n) {
            char c = line.charAt(i);
            if (c == '}') break;
            if (c != '"') { i++; continue; }
            int keyEnd = line.indexOf('"', i + 1);
            String key = line.substring(i + 1, keyEnd);
            i = line.indexOf(':', keyEnd) + 1;
            while (line.charAt(i) == ' ') i++;
            Object value;
            if (line.charAt(i) == '"') {
                StringBuilder sb = new StringBuilder();
                i++;
                while (true) {
                    char d = line.charAt(i++);
                    if (d == '"') break;
                    if (d == '\\') {
                        char e = line.charAt(i++);
                        switch (e) {
                            case 'n': sb.append('\n'); break;
                            case 't': sb.append('\t'); break;
                            case 'r': sb.append('\r'); break;
                            case 'b': sb.append('\b'); break;
                            case 'f': sb.append('\f'); break;
                            case 'u': sb.append((char) Integer.parseInt(line.substring(i, i + 4), 16)); i += 4; break;
                            default: sb.append(e);
                        }
                    } else {
                        sb.append(d);
                    }
                }
                value = sb.toString();
            } else {
                int end = i;
                while (end < n && line.charAt(end) != ',' && line.charAt(end) != '}') end++;
                value = Long.parseLong(line.substring(i, end).trim());
                i = end;
            }
            row.put(key, value);
            while (i < n && line.charAt(i) != ',' && line.charAt(i) != '}') i++;
            if (i < n && line.charAt(i) == ',') i++;
        }
        return row;
    }
}
