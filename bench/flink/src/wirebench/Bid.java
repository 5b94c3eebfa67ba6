package wirebench;

/** A Nexmark bid, the fields of Wire's bid schema. A Flink POJO (public fields, no-arg constructor). */
public class Bid {
    public long auction;
    public long bidder;
    public long price;
    public String channel;
    public String url;
    /** Event time, epoch milliseconds. */
    public long dateTime;
    public String extra;

    public Bid() {}

    public String toJson() {
        StringBuilder sb = new StringBuilder(200);
        sb.append("{\"auction\":").append(auction)
                .append(",\"bidder\":").append(bidder)
                .append(",\"price\":").append(price)
                .append(",\"channel\":");
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
