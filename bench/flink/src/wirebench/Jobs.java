package wirebench;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.SerializableTimestampAssigner;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FilterFunction;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.core.execution.JobListener;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.co.KeyedCoProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.functions.windowing.ProcessAllWindowFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Flink DataStream equivalents of Wire's Nexmark pipelines (examples/nexmark/q0, q1, q2, q3, q4,
 * q5, q7, q8, q11) and of a keyed count (bench/flink/pipelines/count.yaml).
 *
 * <pre>
 * java -cp build:LIB/* wirebench.Jobs --query q5 --events 10000000 --parallelism 2 [--object-reuse]
 *      [--seed 1] [--input bids.jsonl --auctions auctions.jsonl --persons persons.jsonl --output DIR]
 *      [--dump STREAM] [--generator-only]
 * </pre>
 *
 * Without --input the events come from {@link NexmarkSource} (Wire's generator, ported), one
 * source per stream the query reads; with it, from jsonl files (--input for bids, --auctions and
 * --persons for the others). Without --output every query ends in a DiscardingSink; with it, the
 * rows are written as jsonl to DIR/part-SUBTASK.jsonl. Prints one line `FLINK_RESULT k=v ...`.
 * --dump STREAM prints the persons, auctions or bids among the first --events events as jsonl;
 * --generator-only times the generator without Flink.
 */
public final class Jobs {
    public static void main(String[] argv) throws Exception {
        String query = "q0";
        long events = 10_000_000L;
        int parallelism = 1;
        boolean objectReuse = false;
        long seed = 1;
        String input = null;
        String output = null;
        String auctionsFile = null;
        String personsFile = null;
        String dump = null;
        boolean generatorOnly = false;
        for (int i = 0; i < argv.length; i++) {
            switch (argv[i]) {
                case "--query": query = argv[++i]; break;
                case "--events": events = Long.parseLong(argv[++i]); break;
                case "--parallelism": parallelism = Integer.parseInt(argv[++i]); break;
                case "--object-reuse": objectReuse = true; break;
                case "--seed": seed = Long.parseLong(argv[++i]); break;
                case "--input": input = argv[++i]; break;
                case "--output": output = argv[++i]; break;
                case "--auctions": auctionsFile = argv[++i]; break;
                case "--persons": personsFile = argv[++i]; break;
                case "--dump": dump = argv[++i]; break;
                case "--generator-only": generatorOnly = true; break;
                default: throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (dump != null) {
            dump(seed, NexmarkGen.kindOf(dump), events);
            return;
        }
        if (generatorOnly) {
            generatorOnly(seed, events);
            return;
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(parallelism);
        if (objectReuse) {
            env.getConfig().enableObjectReuse();
        }
        final long[] submitted = new long[2];
        env.registerJobListener(new JobListener() {
            @Override
            public void onJobSubmitted(JobClient client, Throwable error) {
                submitted[0] = System.currentTimeMillis();
                submitted[1] = cpuNanos();
            }

            @Override
            public void onJobExecuted(JobExecutionResult result, Throwable error) {}
        });

        // Only the streams the query reads are built.
        boolean readsBids = !query.equals("q3") && !query.equals("q8");
        boolean readsAuctions = query.equals("q3") || query.equals("q4") || query.equals("q8");
        boolean readsPersons = query.equals("q3") || query.equals("q8");
        boolean fromFiles = input != null || auctionsFile != null || personsFile != null;
        DataStream<Bid> bids = !readsBids ? null : stream(env, NexmarkSource.bids(events, seed),
                fromFiles ? required(input, "--input") : null, Bid.class, Json::parseBid, (b, ts) -> b.dateTime);
        DataStream<Auction> auctions = !readsAuctions ? null : stream(env, NexmarkSource.auctions(events, seed),
                fromFiles ? required(auctionsFile, "--auctions") : null, Auction.class, Json::parseAuction,
                (a, ts) -> a.dateTime);
        DataStream<Person> persons = !readsPersons ? null : stream(env, NexmarkSource.persons(events, seed),
                fromFiles ? required(personsFile, "--persons") : null, Person.class, Json::parsePerson,
                (p, ts) -> p.dateTime);

        switch (query) {
            case "q0": {
                finish(bids, output, Bid::toJson);
                break;
            }
            case "q1": {
                DataStream<Rows.BidEuro> euros = bids.map(new MapFunction<Bid, Rows.BidEuro>() {
                    @Override
                    public Rows.BidEuro map(Bid b) {
                        Rows.BidEuro e = new Rows.BidEuro();
                        e.auction = b.auction;
                        e.bidder = b.bidder;
                        e.price = b.price * 0.908;
                        e.channel = b.channel;
                        e.url = b.url;
                        e.dateTime = b.dateTime;
                        e.extra = b.extra;
                        return e;
                    }
                });
                finish(euros, output, Rows.BidEuro::toJson);
                break;
            }
            case "q2": {
                DataStream<Rows.AuctionPrice> selected = bids
                        .filter(new FilterFunction<Bid>() {
                            @Override
                            public boolean filter(Bid b) {
                                return b.auction % 123 == 0;
                            }
                        })
                        .map(new MapFunction<Bid, Rows.AuctionPrice>() {
                            @Override
                            public Rows.AuctionPrice map(Bid b) {
                                Rows.AuctionPrice r = new Rows.AuctionPrice();
                                r.auction = b.auction;
                                r.price = b.price;
                                return r;
                            }
                        });
                finish(selected, output, Rows.AuctionPrice::toJson);
                break;
            }
            case "q5": {
                DataStream<Rows.AuctionCount> hottest = bids
                        .keyBy((Bid b) -> b.auction)
                        .window(SlidingEventTimeWindows.of(Duration.ofSeconds(10), Duration.ofSeconds(2)))
                        .aggregate(new CountBids(), new ProcessWindowFunction<Long, Rows.AuctionCount, Long, TimeWindow>() {
                            @Override
                            public void process(Long auction, Context ctx, Iterable<Long> counts, Collector<Rows.AuctionCount> out) {
                                TimeWindow w = ctx.window();
                                out.collect(new Rows.AuctionCount(auction, counts.iterator().next(), w.getStart(), w.getEnd()));
                            }
                        })
                        // Each count carries the time window_end - 1; grouping by window_end in a
                        // 2 s tumbling window closes exactly when the hop window did.
                        .keyBy((Rows.AuctionCount c) -> c.windowEnd)
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(2)))
                        .aggregate(new MaxCountWithTies(), new ProcessWindowFunction<Rows.CountTies, Rows.AuctionCount, Long, TimeWindow>() {
                            @Override
                            public void process(Long end, Context ctx, Iterable<Rows.CountTies> ties, Collector<Rows.AuctionCount> out) {
                                for (Rows.AuctionCount row : ties.iterator().next().rows) {
                                    out.collect(row);
                                }
                            }
                        });
                finish(hottest, output, Rows.AuctionCount::toJson);
                break;
            }
            case "q7": {
                // One group (no key): all bids go to one subtask, as in Wire ("all its rows go
                // to one core"); the accumulator keeps only the bids at the maximum so far.
                DataStream<Rows.Q7Row> highest = bids
                        .windowAll(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                        .aggregate(new MaxBidWithTies(), new ProcessAllWindowFunction<Rows.BidTies, Rows.Q7Row, TimeWindow>() {
                            @Override
                            public void process(Context ctx, Iterable<Rows.BidTies> ties, Collector<Rows.Q7Row> out) {
                                for (Rows.Q7Row row : ties.iterator().next().rows) {
                                    row.windowEnd = ctx.window().getEnd();
                                    out.collect(row);
                                }
                            }
                        });
                finish(highest, output, Rows.Q7Row::toJson);
                break;
            }
            case "q11": {
                // Sessions per bidder with a 10 s gap: Flink merges windows [t, t + gap) that
                // touch (TimeWindow.intersects), as Wire's session windows do.
                DataStream<Rows.Session> sessions = bids
                        .keyBy((Bid b) -> b.bidder)
                        .window(EventTimeSessionWindows.withGap(Duration.ofSeconds(10)))
                        .aggregate(new CountBids(), new ProcessWindowFunction<Long, Rows.Session, Long, TimeWindow>() {
                            @Override
                            public void process(Long bidder, Context ctx, Iterable<Long> counts, Collector<Rows.Session> out) {
                                TimeWindow w = ctx.window();
                                out.collect(new Rows.Session(bidder, w.getStart(), w.getEnd(), counts.iterator().next()));
                            }
                        });
                finish(sessions, output, Rows.Session::toJson);
                break;
            }
            case "q3": {
                DataStream<Auction> category10 = auctions.filter(a -> a.category == 10);
                DataStream<Person> western = persons.filter(
                        p -> p.state.equals("OR") || p.state.equals("ID") || p.state.equals("CA"));
                DataStream<Rows.Q3Row> sellers = category10.connect(western)
                        .keyBy((Auction a) -> a.seller, (Person p) -> p.id)
                        .process(new SellerJoin());
                finish(sellers, output, Rows.Q3Row::toJson);
                break;
            }
            case "q8": {
                // Window aggregates carry the time window_end - 1 (Flink's maxTimestamp), so the
                // window join below sees both sides' rows of a window in that same window.
                DataStream<Rows.NewPerson> newPersons = persons
                        // Wire groups by [id, name]; a person id has one name.
                        .keyBy((Person p) -> p.id)
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                        .aggregate(new Registrations(), new ProcessWindowFunction<Rows.NewPerson, Rows.NewPerson, Long, TimeWindow>() {
                            @Override
                            public void process(Long id, Context ctx, Iterable<Rows.NewPerson> rows, Collector<Rows.NewPerson> out) {
                                Rows.NewPerson row = rows.iterator().next();
                                row.windowStart = ctx.window().getStart();
                                row.windowEnd = ctx.window().getEnd();
                                out.collect(row);
                            }
                        });
                DataStream<Rows.NewSeller> newSellers = auctions
                        .keyBy((Auction a) -> a.seller)
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                        .aggregate(new CountAuctions(), new ProcessWindowFunction<Long, Rows.NewSeller, Long, TimeWindow>() {
                            @Override
                            public void process(Long seller, Context ctx, Iterable<Long> counts, Collector<Rows.NewSeller> out) {
                                TimeWindow w = ctx.window();
                                out.collect(new Rows.NewSeller(seller, w.getStart(), w.getEnd(), counts.iterator().next()));
                            }
                        });
                DataStream<Rows.Q8Row> joined = newPersons.join(newSellers)
                        .where((Rows.NewPerson p) -> p.id)
                        .equalTo((Rows.NewSeller s) -> s.seller)
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                        .apply((Rows.NewPerson p, Rows.NewSeller s) -> new Rows.Q8Row(p.id, p.name, p.windowStart),
                                TypeInformation.of(Rows.Q8Row.class));
                finish(joined, output, Rows.Q8Row::toJson);
                break;
            }
            case "q4": {
                DataStream<Rows.CategoryAverage> perCategory = auctions.connect(bids)
                        .keyBy((Auction a) -> a.id, (Bid b) -> b.auction)
                        .process(new WinningBids())
                        .keyBy((Rows.MaxChange c) -> c.category)
                        .process(new AverageOfMaxima());
                finish(perCategory, output, Rows.CategoryAverage::toJson);
                break;
            }
            case "count": {
                DataStream<Rows.KeyedCount> counts = bids
                        .keyBy((Bid b) -> b.auction)
                        .process(new RunningCount());
                finish(counts, output, Rows.KeyedCount::toJson);
                break;
            }
            default:
                throw new IllegalArgumentException("unknown query " + query);
        }

        JobExecutionResult result = env.execute("wire-bench " + query);
        long endMs = System.currentTimeMillis();
        long endCpu = cpuNanos();
        long jvmStart = ManagementFactory.getRuntimeMXBean().getStartTime();
        System.out.printf(
                "FLINK_RESULT query=%s parallelism=%d object_reuse=%b events=%d net_runtime_ms=%d "
                        + "startup_ms=%d submit_ms=%d job_wall_ms=%d job_cpu_ms=%d process_cpu_ms=%d vmhwm_kb=%d%n",
                query, parallelism, objectReuse, events, result.getNetRuntime(),
                NexmarkSource.firstEventMs == 0 ? -1 : NexmarkSource.firstEventMs - jvmStart,
                submitted[0] - jvmStart, endMs - submitted[0], (endCpu - submitted[1]) / 1_000_000,
                endCpu / 1_000_000, vmHwmKb());
    }

    /** Ends `rows` in a DiscardingSink, or, with an output directory, writes them as jsonl. */
    static <T> void finish(DataStream<T> rows, String output, MapFunction<T, String> toJson) throws java.io.IOException {
        if (output == null) {
            rows.sinkTo(new DiscardingSink<>());
        } else {
            Files.createDirectories(Paths.get(output));
            rows.map(toJson).sinkTo(new LineFileSink(output));
        }
    }

    /** One Nexmark stream: generated by `generated`, or read from a jsonl `file` when given, with
     * Wire's nexmark watermark (the largest `date_time` seen - 4 s - 1 ms, per source partition). */
    static <T> DataStream<T> stream(StreamExecutionEnvironment env, NexmarkSource<T> generated, String file,
            Class<T> type, MapFunction<String, T> parse, SerializableTimestampAssigner<T> dateTime) {
        WatermarkStrategy<T> watermarks = WatermarkStrategy.<T>forBoundedOutOfOrderness(Duration.ofSeconds(4))
                .withTimestampAssigner(dateTime);
        String name = type.getSimpleName().toLowerCase() + "s";
        if (file == null) {
            return env.fromSource(generated, watermarks, name, TypeInformation.of(type));
        }
        FileSource<String> files = FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(file)).build();
        return env.fromSource(files, WatermarkStrategy.noWatermarks(), name + "-file")
                .map(parse)
                .returns(type)
                .assignTimestampsAndWatermarks(watermarks);
    }

    static String required(String value, String flag) {
        if (value == null) {
            throw new IllegalArgumentException("this query reads files: it needs " + flag + " FILE");
        }
        return value;
    }

    /** CPU time (user + system) of this JVM so far. */
    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    static long vmHwmKb() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (Exception e) {
            // not on Linux
        }
        return -1;
    }

    /** The generator alone, without Flink: one thread, all `events`, three times (JIT warm-up). */
    static void generatorOnly(long seed, long events) {
        NexmarkGen gen = new NexmarkGen(seed);
        for (int round = 0; round < 3; round++) {
            long cpu0 = cpuNanos();
            long t0 = System.nanoTime();
            long sink = 0;
            for (long n = 0; n < events; n++) {
                if (NexmarkGen.isBid(n)) {
                    Bid bid = gen.bid(n);
                    sink += bid.price + bid.url.length() + bid.extra.length();
                }
            }
            double wall = (System.nanoTime() - t0) / 1e9;
            double cpu = (cpuNanos() - cpu0) / 1e9;
            System.out.printf("GENERATOR round=%d events=%d wall_s=%.3f cpu_s=%.3f events_per_s=%.0f events_per_cpu_s=%.0f check=%d%n",
                    round, events, wall, cpu, events / wall, events / cpu, sink);
        }
    }

    /** The events of `kind` among event numbers 0 to `events - 1`, in order, as jsonl on stdout. */
    static void dump(long seed, int kind, long events) {
        NexmarkGen gen = new NexmarkGen(seed);
        StringBuilder out = new StringBuilder();
        for (long n = 0; n < events; n++) {
            if (NexmarkGen.kind(n) != kind) {
                continue;
            }
            switch (kind) {
                case NexmarkGen.BID: out.append(gen.bid(n).toJson()); break;
                case NexmarkGen.AUCTION: out.append(gen.auction(n).toJson()); break;
                default: out.append(gen.person(n).toJson());
            }
            out.append('\n');
            if (out.length() > 1 << 20) {
                System.out.print(out);
                out.setLength(0);
            }
        }
        System.out.print(out);
        System.out.flush();
    }

    public static final class CountBids implements AggregateFunction<Bid, Long, Long> {
        @Override public Long createAccumulator() { return 0L; }
        @Override public Long add(Bid value, Long acc) { return acc + 1; }
        @Override public Long getResult(Long acc) { return acc; }
        @Override public Long merge(Long a, Long b) { return a + b; }
    }

    public static final class MaxCountWithTies implements AggregateFunction<Rows.AuctionCount, Rows.CountTies, Rows.CountTies> {
        @Override public Rows.CountTies createAccumulator() { return new Rows.CountTies(); }

        @Override
        public Rows.CountTies add(Rows.AuctionCount c, Rows.CountTies acc) {
            if (c.num > acc.max) {
                acc.max = c.num;
                acc.rows.clear();
            }
            if (c.num == acc.max) {
                // A copy: with object reuse the input instance may be reused.
                acc.rows.add(new Rows.AuctionCount(c.auction, c.num, c.windowStart, c.windowEnd));
            }
            return acc;
        }

        @Override public Rows.CountTies getResult(Rows.CountTies acc) { return acc; }

        @Override
        public Rows.CountTies merge(Rows.CountTies a, Rows.CountTies b) {
            for (Rows.AuctionCount c : b.rows) {
                add(c, a);
            }
            return a;
        }
    }

    public static final class MaxBidWithTies implements AggregateFunction<Bid, Rows.BidTies, Rows.BidTies> {
        @Override public Rows.BidTies createAccumulator() { return new Rows.BidTies(); }

        @Override
        public Rows.BidTies add(Bid b, Rows.BidTies acc) {
            if (b.price > acc.max) {
                acc.max = b.price;
                acc.rows.clear();
            }
            if (b.price == acc.max) {
                Rows.Q7Row r = new Rows.Q7Row();
                r.auction = b.auction;
                r.price = b.price;
                r.bidder = b.bidder;
                r.dateTime = b.dateTime;
                r.extra = b.extra;
                acc.rows.add(r);
            }
            return acc;
        }

        @Override public Rows.BidTies getResult(Rows.BidTies acc) { return acc; }

        @Override
        public Rows.BidTies merge(Rows.BidTies a, Rows.BidTies b) {
            for (Rows.Q7Row r : b.rows) {
                if (r.price > a.max) {
                    a.max = r.price;
                    a.rows.clear();
                }
                if (r.price == a.max) {
                    a.rows.add(r);
                }
            }
            return a;
        }
    }

    /** An unbounded count per auction: every bid emits its auction's new count. */
    public static final class RunningCount extends KeyedProcessFunction<Long, Bid, Rows.KeyedCount> {
        private transient ValueState<Long> count;

        @Override
        public void open(OpenContext context) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        }

        @Override
        public void processElement(Bid bid, Context ctx, Collector<Rows.KeyedCount> out) throws Exception {
            Long previous = count.value();
            long next = previous == null ? 1 : previous + 1;
            count.update(next);
            out.collect(new Rows.KeyedCount(bid.auction, next));
        }
    }

    public static final class CountAuctions implements AggregateFunction<Auction, Long, Long> {
        @Override public Long createAccumulator() { return 0L; }
        @Override public Long add(Auction value, Long acc) { return acc + 1; }
        @Override public Long getResult(Long acc) { return acc; }
        @Override public Long merge(Long a, Long b) { return a + b; }
    }

    /** q8: a person's registrations in a window, with the person's id and name. */
    public static final class Registrations implements AggregateFunction<Person, Rows.NewPerson, Rows.NewPerson> {
        @Override public Rows.NewPerson createAccumulator() { return new Rows.NewPerson(); }

        @Override
        public Rows.NewPerson add(Person p, Rows.NewPerson acc) {
            acc.id = p.id;
            acc.name = p.name;
            acc.registrations++;
            return acc;
        }

        @Override public Rows.NewPerson getResult(Rows.NewPerson acc) { return acc; }

        @Override
        public Rows.NewPerson merge(Rows.NewPerson a, Rows.NewPerson b) {
            a.registrations += b.registrations;
            return a;
        }
    }

    /**
     * q3: Wire's regular inner join of category-10 auctions (left, by seller) and western persons
     * (right, by id), projected to the person's name, city and state and the auction's id. Both
     * sides are kept for the whole run, as Wire's join without `retention`: a person is kept for
     * the auctions that come after it, the auctions that come first wait for their seller.
     */
    public static final class SellerJoin extends KeyedCoProcessFunction<Long, Auction, Person, Rows.Q3Row> {
        private transient ValueState<Rows.Q3Row> seller;
        private transient ListState<Long> waiting;

        @Override
        public void open(OpenContext context) {
            seller = getRuntimeContext().getState(new ValueStateDescriptor<>("seller", Rows.Q3Row.class));
            waiting = getRuntimeContext().getListState(new ListStateDescriptor<>("waiting", Long.class));
        }

        @Override
        public void processElement1(Auction a, Context ctx, Collector<Rows.Q3Row> out) throws Exception {
            Rows.Q3Row person = seller.value();
            if (person == null) {
                waiting.add(a.id);
            } else {
                out.collect(new Rows.Q3Row(person.name, person.city, person.state, a.id));
            }
        }

        @Override
        public void processElement2(Person p, Context ctx, Collector<Rows.Q3Row> out) throws Exception {
            // Each person id occurs once in the Nexmark stream; a second one would join as well.
            seller.update(new Rows.Q3Row(p.name, p.city, p.state, 0));
            for (Long auction : waiting.get()) {
                out.collect(new Rows.Q3Row(p.name, p.city, p.state, auction));
            }
            waiting.clear();
        }
    }

    /**
     * q4's interval join and max: the bids of an auction whose time lies in [date_time, expires]
     * (inclusive, Wire's `between`), and the highest price among them, emitted once when the
     * watermark passes `expires` (the auction has closed: Wire's `max_until`). As Wire's interval
     * join, an auction is kept until then, and a bid that comes before its auction waits until
     * the watermark passes the bid's own time.
     */
    public static final class WinningBids extends KeyedCoProcessFunction<Long, Auction, Bid, Rows.MaxChange> {
        private transient ValueState<Rows.OpenAuction> open;
        private transient ListState<Rows.TimedPrice> waiting;

        @Override
        public void open(OpenContext context) {
            open = getRuntimeContext().getState(new ValueStateDescriptor<>("open", Rows.OpenAuction.class));
            waiting = getRuntimeContext().getListState(new ListStateDescriptor<>("waiting", Rows.TimedPrice.class));
        }

        @Override
        public void processElement1(Auction a, Context ctx, Collector<Rows.MaxChange> out) throws Exception {
            Rows.OpenAuction state = new Rows.OpenAuction(a.category, a.dateTime, a.expires);
            for (Rows.TimedPrice bid : waiting.get()) {
                offer(state, bid.time, bid.price);
            }
            // A waiting bid before date_time can match no other auction: ids are unique.
            waiting.clear();
            open.update(state);
            ctx.timerService().registerEventTimeTimer(a.expires);
        }

        @Override
        public void processElement2(Bid b, Context ctx, Collector<Rows.MaxChange> out) throws Exception {
            Rows.OpenAuction state = open.value();
            if (state == null) {
                waiting.add(new Rows.TimedPrice(b.dateTime, b.price));
                ctx.timerService().registerEventTimeTimer(b.dateTime);
            } else if (offer(state, b.dateTime, b.price)) {
                open.update(state);
            }
        }

        /** Counts a bid at `time` for the auction; true when it raised the maximum. */
        private static boolean offer(Rows.OpenAuction a, long time, long price) {
            if (time < a.dateTime || time > a.expires) {
                return false;
            }
            if (a.hasMax && price <= a.max) {
                return false;
            }
            a.hasMax = true;
            a.max = price;
            return true;
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Rows.MaxChange> out) throws Exception {
            Rows.OpenAuction state = open.value();
            if (state != null && timestamp >= state.expires) {
                if (state.hasMax) {
                    out.collect(new Rows.MaxChange(ctx.getCurrentKey(), state.category, false, 0, state.max));
                }
                open.clear();
            }
            List<Rows.TimedPrice> kept = new ArrayList<>();
            for (Rows.TimedPrice bid : waiting.get()) {
                if (bid.time > timestamp) {
                    kept.add(bid);
                }
            }
            waiting.update(kept);
        }
    }

    /** q4's average per category of the closed auctions' maxima (one change per auction). */
    public static final class AverageOfMaxima extends KeyedProcessFunction<Long, Rows.MaxChange, Rows.CategoryAverage> {
        private transient ValueState<Rows.SumCount> totals;

        @Override
        public void open(OpenContext context) {
            totals = getRuntimeContext().getState(new ValueStateDescriptor<>("totals", Rows.SumCount.class));
        }

        @Override
        public void processElement(Rows.MaxChange c, Context ctx, Collector<Rows.CategoryAverage> out) throws Exception {
            Rows.SumCount t = totals.value();
            if (t == null) {
                t = new Rows.SumCount();
            }
            if (c.hadPrevious) {
                t.sum -= c.previous;
            } else {
                t.count++;
            }
            t.sum += c.max;
            totals.update(t);
            out.collect(new Rows.CategoryAverage(c.category, (double) t.sum / t.count));
        }
    }
}
