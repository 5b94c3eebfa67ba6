package wirebench;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** Writes each string as one line to `<dir>/part-<subtask>.jsonl` (for the cross-check). */
public final class LineFileSink implements Sink<String> {
    private final String dir;

    public LineFileSink(String dir) {
        this.dir = dir;
    }

    @Override
    public SinkWriter<String> createWriter(WriterInitContext context) throws IOException {
        Path path = Paths.get(dir, "part-" + context.getTaskInfo().getIndexOfThisSubtask() + ".jsonl");
        Files.createDirectories(path.getParent());
        BufferedWriter out = Files.newBufferedWriter(path, StandardCharsets.UTF_8);
        return new SinkWriter<String>() {
            @Override
            public void write(String line, Context ctx) throws IOException {
                out.write(line);
                out.write('\n');
            }

            @Override
            public void flush(boolean endOfInput) throws IOException {
                out.flush();
            }

            @Override
            public void close() throws IOException {
                out.close();
            }
        };
    }
}
