package wirebench;

/** A Nexmark person, the fields of Wire's person schema. A Flink POJO (public fields, no-arg constructor). */
public class Person {
    public long id;
    public String name;
    public String emailAddress;
    public String creditCard;
    public String city;
    public String state;
    /** Event time, epoch milliseconds. */
    public long dateTime;
    public String extra;

    public Person() {}

    public String toJson() {
        StringBuilder sb = new StringBuilder(256);
        sb.append("{\"id\":").append(id).append(",\"name\":");
        Json.string(sb, name);
        sb.append(",\"email_address\":");
        Json.string(sb, emailAddress);
        sb.append(",\"credit_card\":");
        Json.string(sb, creditCard);
        sb.append(",\"city\":");
        Json.string(sb, city);
        sb.append(",\"state\":");
        Json.string(sb, state);
        sb.append(",\"date_time\":");
        Json.timestamp(sb, dateTime);
        sb.append(",\"extra\":");
        Json.string(sb, extra);
        return sb.append('}').toString();
    }
}
