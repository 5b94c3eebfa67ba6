package wirebench;

import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.ReaderOutput;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SourceSplit;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.core.io.InputStatus;
import org.apache.flink.core.io.SimpleVersionedSerializer;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * One Nexmark stream (persons, auctions or bids) as a bounded FLIP-27 source, partitioned as
 * Wire's `nexmark` source: with P subtasks, partition p looks at event numbers p, p + P, p + 2P,
 * ... below `events` and emits the events of its kind among them (the others are skipped without
 * being generated), each with its `date_time` as record timestamp.
 */
public final class NexmarkSource<T> implements Source<T, NexmarkSource.Split, ArrayList<NexmarkSource.Split>> {
    /** Wall-clock time (epoch ms) of the first event any reader emitted in this JVM. */
    public static volatile long firstEventMs = 0;

    private final long events;
    private final long seed;
    private final int kind;

    /** Bids. */
    public static NexmarkSource<Bid> bids(long events, long seed) {
        return new NexmarkSource<>(events, seed, NexmarkGen.BID);
    }

    public static NexmarkSource<Auction> auctions(long events, long seed) {
        return new NexmarkSource<>(events, seed, NexmarkGen.AUCTION);
    }

    public static NexmarkSource<Person> persons(long events, long seed) {
        return new NexmarkSource<>(events, seed, NexmarkGen.PERSON);
    }

    private NexmarkSource(long events, long seed, int kind) {
        this.events = events;
        this.seed = seed;
        this.kind = kind;
    }

    @Override
    public Boundedness getBoundedness() {
        return Boundedness.BOUNDED;
    }

    @Override
    public SplitEnumerator<Split, ArrayList<Split>> createEnumerator(SplitEnumeratorContext<Split> context) {
        int p = context.currentParallelism();
        ArrayList<Split> splits = new ArrayList<>();
        for (int i = 0; i < p; i++) {
            splits.add(new Split(i, p, i));
        }
        return new Enumerator(context, splits);
    }

    @Override
    public SplitEnumerator<Split, ArrayList<Split>> restoreEnumerator(
            SplitEnumeratorContext<Split> context, ArrayList<Split> checkpoint) {
        return new Enumerator(context, checkpoint);
    }

    @Override
    public SimpleVersionedSerializer<Split> getSplitSerializer() {
        return new SplitSerializer();
    }

    @Override
    public SimpleVersionedSerializer<ArrayList<Split>> getEnumeratorCheckpointSerializer() {
        return new ListSerializer();
    }

    @Override
    public SourceReader<T, Split> createReader(SourceReaderContext context) {
        return new Reader<>(events, seed, kind);
    }

    /** Partition `partition` of `partitions`; `next` is the next event number to look at. */
    public static final class Split implements SourceSplit, java.io.Serializable {
        final int partition;
        final int partitions;
        long next;

        Split(int partition, int partitions, long next) {
            this.partition = partition;
            this.partitions = partitions;
            this.next = next;
        }

        @Override
        public String splitId() {
            return "p" + partition;
        }
    }

    static final class Enumerator implements SplitEnumerator<Split, ArrayList<Split>> {
        private final SplitEnumeratorContext<Split> context;
        private final ArrayList<Split> unassigned;

        Enumerator(SplitEnumeratorContext<Split> context, ArrayList<Split> unassigned) {
            this.context = context;
            this.unassigned = unassigned;
        }

        @Override public void start() {}

        @Override public void handleSplitRequest(int subtask, String host) {}

        @Override
        public void addSplitsBack(List<Split> splits, int subtask) {
            unassigned.addAll(splits);
            addReader(subtask);
        }

        @Override
        public void addReader(int subtask) {
            for (int i = 0; i < unassigned.size(); i++) {
                if (unassigned.get(i).partition % context.currentParallelism() == subtask) {
                    context.assignSplit(unassigned.remove(i), subtask);
                    i--;
                }
            }
            context.signalNoMoreSplits(subtask);
        }

        @Override
        public ArrayList<Split> snapshotState(long checkpointId) {
            return new ArrayList<>(unassigned);
        }

        @Override public void close() {}
    }

    static final class Reader<T> implements SourceReader<T, Split> {
        private static final int BATCH = 1024;
        private final long events;
        private final int kind;
        private final NexmarkGen gen;
        private final ArrayDeque<Split> splits = new ArrayDeque<>();
        private boolean noMoreSplits;
        private CompletableFuture<Void> available = new CompletableFuture<>();

        Reader(long events, long seed, int kind) {
            this.events = events;
            this.gen = new NexmarkGen(seed);
            this.kind = kind;
        }

        @Override public void start() {}

        @Override
        @SuppressWarnings("unchecked")
        public InputStatus pollNext(ReaderOutput<T> output) {
            Split split = splits.peek();
            if (split == null) {
                return noMoreSplits ? InputStatus.END_OF_INPUT : InputStatus.NOTHING_AVAILABLE;
            }
            if (firstEventMs == 0) {
                firstEventMs = System.currentTimeMillis();
            }
            long n = split.next;
            int stride = split.partitions;
            int emitted = 0;
            while (n < events && emitted < BATCH) {
                if (NexmarkGen.kind(n) == kind) {
                    switch (kind) {
                        case NexmarkGen.BID: {
                            Bid bid = gen.bid(n);
                            output.collect((T) bid, bid.dateTime);
                            break;
                        }
                        case NexmarkGen.AUCTION: {
                            Auction auction = gen.auction(n);
                            output.collect((T) auction, auction.dateTime);
                            break;
                        }
                        default: {
                            Person person = gen.person(n);
                            output.collect((T) person, person.dateTime);
                        }
                    }
                    emitted++;
                }
                n += stride;
            }
            split.next = n;
            if (n >= events) {
                splits.poll();
                if (splits.isEmpty() && noMoreSplits) {
                    return InputStatus.END_OF_INPUT;
                }
            }
            return InputStatus.MORE_AVAILABLE;
        }

        @Override
        public List<Split> snapshotState(long checkpointId) {
            List<Split> copy = new ArrayList<>();
            for (Split s : splits) {
                copy.add(new Split(s.partition, s.partitions, s.next));
            }
            return copy;
        }

        @Override
        public CompletableFuture<Void> isAvailable() {
            return available;
        }

        @Override
        public void addSplits(List<Split> added) {
            splits.addAll(added);
            available.complete(null);
        }

        @Override
        public void notifyNoMoreSplits() {
            noMoreSplits = true;
            available.complete(null);
        }

        @Override public void close() {}
    }

    static final class SplitSerializer implements SimpleVersionedSerializer<Split> {
        @Override public int getVersion() { return 1; }

        @Override
        public byte[] serialize(Split s) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(s.partition);
            out.writeInt(s.partitions);
            out.writeLong(s.next);
            out.flush();
            return bytes.toByteArray();
        }

        @Override
        public Split deserialize(int version, byte[] data) throws IOException {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(data));
            return new Split(in.readInt(), in.readInt(), in.readLong());
        }
    }

    static final class ListSerializer implements SimpleVersionedSerializer<ArrayList<Split>> {
        private final SplitSerializer one = new SplitSerializer();

        @Override public int getVersion() { return 1; }

        @Override
        public byte[] serialize(ArrayList<Split> list) throws IOException {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeInt(list.size());
            for (Split s : list) {
                byte[] b = one.serialize(s);
                out.writeInt(b.length);
                out.write(b);
            }
            out.flush();
            return bytes.toByteArray();
        }

        @Override
        public ArrayList<Split> deserialize(int version, byte[] data) throws IOException {
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(data));
            int n = in.readInt();
            ArrayList<Split> list = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                byte[] b = new byte[in.readInt()];
                in.readFully(b);
                list.add(one.deserialize(version, b));
            }
            return list;
        }
    }
}
