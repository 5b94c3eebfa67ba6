package wirebench;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;

/** Just enough JSON for flat rows: writing strings and timestamps as Wire's jsonl does, and
 * reading Wire's jsonl bids back (a flat object of numbers and strings). */
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
        Bid bid = new Bid();
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
            switch (key) {
                case "auction": bid.auction = (Long) value; break;
                case "bidder": bid.bidder = (Long) value; break;
                case "price": bid.price = (Long) value; break;
                case "channel": bid.channel = (String) value; break;
                case "url": bid.url = (String) value; break;
                case "date_time":
                    bid.dateTime = value instanceof Long ? (Long) value
                            : Instant.parse((String) value).toEpochMilli();
                    break;
                case "extra": bid.extra = (String) value; break;
                default: break;
            }
            while (i < n && line.charAt(i) != ',' && line.charAt(i) != '}') i++;
            if (i < n && line.charAt(i) == ',') i++;
        }
        return bid;
    }
}
