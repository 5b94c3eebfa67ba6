package wirebench;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FilterFunction;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.core.execution.JobListener;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.streaming.api.functions.windowing.ProcessAllWindowFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;

/**
 * Flink DataStream equivalents of Wire's Nexmark pipelines (examples/nexmark/q0, q1, q2, q5, q7)
 * and of a keyed count (bench/flink/pipelines/count.yaml).
 *
 * <pre>
 * java -cp build:LIB/* wirebench.Jobs --query q5 --events 10000000 --parallelism 2 [--object-reuse]
 *      [--seed 1] [--input bids.jsonl --output DIR] [--dump N] [--generator-only]
 * </pre>
 *
 * Without --input the bids come from {@link NexmarkSource} (Wire's generator, ported); with it,
 * from a jsonl file of bids. Without --output every query ends in a DiscardingSink; with it, the
 * rows are written as jsonl to DIR/part-SUBTASK.jsonl. Prints one line `FLINK_RESULT k=v ...`.
 * --dump N prints the first N bids as jsonl; --generator-only times the generator without Flink.
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
        long dump = 0;
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
                case "--dump": dump = Long.parseLong(argv[++i]); break;
                case "--generator-only": generatorOnly = true; break;
                default: throw new IllegalArgumentException("unknown argument " + argv[i]);
            }
        }
        if (dump > 0) {
            dumpBids(seed, dump);
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

        // Wire's nexmark default: watermark = max event time - 4 s - 1 ms, per source partition.
        WatermarkStrategy<Bid> watermarks = WatermarkStrategy
                .<Bid>forBoundedOutOfOrderness(Duration.ofSeconds(4))
                .withTimestampAssigner((bid, ts) -> bid.dateTime);
        DataStream<Bid> bids;
        if (input == null) {
            bids = env.fromSource(new NexmarkSource(events, seed), watermarks, "nexmark");
        } else {
            FileSource<String> files = FileSource
                    .forRecordStreamFormat(new TextLineInputFormat(), new Path(input)).build();
            bids = env.fromSource(files, WatermarkStrategy.noWatermarks(), "file")
                    .map(new MapFunction<String, Bid>() {
                        @Override
                        public Bid map(String line) {
                            return Json.parseBid(line);
                        }
                    })
                    .assignTimestampsAndWatermarks(watermarks);
        }

        switch (query) {
            case "q0": {
                finish(bids, output, new MapFunction<Bid, String>() {
                    @Override
                    public String map(Bid b) {
                        return b.toJson();
                    }
                });
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
                finish(euros, output, new MapFunction<Rows.BidEuro, String>() {
                    @Override
                    public String map(Rows.BidEuro r) {
                        return r.toJson();
                    }
                });
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
                finish(selected, output, new MapFunction<Rows.AuctionPrice, String>() {
                    @Override
                    public String map(Rows.AuctionPrice r) {
                        return r.toJson();
                    }
                });
                break;
            }
            case "q5": {
                DataStream<Rows.AuctionCount> hottest = bids
                        .keyBy(new KeySelector<Bid, Long>() {
                            @Override
                            public Long getKey(Bid b) {
                                return b.auction;
                            }
                        })
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
                        .keyBy(new KeySelector<Rows.AuctionCount, Long>() {
                            @Override
                            public Long getKey(Rows.AuctionCount c) {
                                return c.windowEnd;
                            }
                        })
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(2)))
                        .aggregate(new MaxCountWithTies(), new ProcessWindowFunction<Rows.CountTies, Rows.AuctionCount, Long, TimeWindow>() {
                            @Override
                            public void process(Long end, Context ctx, Iterable<Rows.CountTies> ties, Collector<Rows.AuctionCount> out) {
                                for (Rows.AuctionCount row : ties.iterator().next().rows) {
                                    out.collect(row);
                                }
                            }
                        });
                finish(hottest, output, new MapFunction<Rows.AuctionCount, String>() {
                    @Override
                    public String map(Rows.AuctionCount r) {
                        return r.toJson();
                    }
                });
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
                finish(highest, output, new MapFunction<Rows.Q7Row, String>() {
                    @Override
                    public String map(Rows.Q7Row r) {
                        return r.toJson();
                    }
                });
                break;
            }
            case "count": {
                DataStream<Rows.KeyedCount> counts = bids
                        .keyBy(new KeySelector<Bid, Long>() {
                            @Override
                            public Long getKey(Bid b) {
                                return b.auction;
                            }
                        })
                        .process(new RunningCount());
                finish(counts, output, new MapFunction<Rows.KeyedCount, String>() {
                    @Override
                    public String map(Rows.KeyedCount r) {
                        return r.toJson();
                    }
                });
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

    /** The first `count` bids of the stream (event numbers in order), as jsonl on stdout. */
    static void dumpBids(long seed, long count) {
        NexmarkGen gen = new NexmarkGen(seed);
        StringBuilder out = new StringBuilder();
        long written = 0;
        for (long n = 0; written < count; n++) {
            if (NexmarkGen.isBid(n)) {
                out.append(gen.bid(n).toJson()).append('\n');
                written++;
                if (out.length() > 1 << 20) {
                    System.out.print(out);
                    out.setLength(0);
                }
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
}
