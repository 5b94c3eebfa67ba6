package wirebench;

/** A Nexmark auction, the fields of Wire's auction schema. A Flink POJO (public fields, no-arg constructor). */
public class Auction {
    public long id;
    public String itemName;
    public String description;
    public long initialBid;
    public long reserve;
    /** Event time, epoch milliseconds. */
    public long dateTime;
    /** Closing time, epoch milliseconds. */
    public long expires;
    public long seller;
    public long category;
    public String extra;

    public Auction() {}

    public String toJson() {
        StringBuilder sb = new StringBuilder(600);
        sb.append("{\"id\":").append(id).append(",\"item_name\":");
        Json.string(sb, itemName);
        sb.append(",\"description\":");
        Json.string(sb, description);
        sb.append(",\"initial_bid\":").append(initialBid).append(",\"reserve\":").append(reserve)
                .append(",\"date_time\":");
        Json.timestamp(sb, dateTime);
        sb.append(",\"expires\":");
        Json.timestamp(sb, expires);
        sb.append(",\"seller\":").append(seller).append(",\"category\":").append(category)
                .append(",\"extra\":");
        Json.string(sb, extra);
        return sb.append('}').toString();
    }
}
