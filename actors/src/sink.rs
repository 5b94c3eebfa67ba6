//! Sinks: every core runs one instance of every sink, fed by its mailbox.
//!
//! - `blackhole` counts rows and drops them;
//! - `stdout` writes rows as JSON lines or CSV, one locked write per batch (on glommio's
//!   blocking thread, so a slow reader never stalls the core) so lines from different cores
//!   never interleave; a closed pipe (`wire run … | head`) stops the pipeline
//!   gracefully instead of failing it;
//! - `file` writes rolling part files `part-<core>-<seq>.<ext>` into a directory: each is
//!   written as `<name>.inprogress`, synced, and renamed when it reaches `roll_bytes` or the
//!   run ends, so a file without the suffix is always complete. With `partition_by`, each row
//!   goes to the subdirectory its value names (sanitized so it never leaves the directory),
//!   with at most `OPEN_PARTITIONS_MAX` parts open per core.

mod dir;
mod document;
mod elasticsearch;
mod kafka;
mod mongodb;
mod postgres;
pub(crate) mod refusals;
mod stage;

pub use kafka::recover_kafka_sinks;
pub use postgres::recover_postgres_sinks;
pub(crate) use postgres::substitute_env;

pub use dir::{
    discard_file_sink_parts, lock_file_sinks, published_file_sink_parts, PublishedParts, SinkLocks,
    LOCK_FILE as SINK_LOCK_FILE,
};

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Once;

use glommio::io::BufferedFile;
use wire_core::frontend::expr::Expr;
use wire_core::frontend::plan::PlanSink;
use wire_core::frontend::spec::{FileFormat, FileSink, SinkKind};
use wire_core::Batch;

use crate::checkpoint::{Ack, AckContent, Delivery, Inbox};
use crate::graph::Head;
use crate::message::Message;
use crate::pipeline::CoreCx;
use crate::probe::{Counters, Latency};
use crate::Error;
use wire_core::record::format::RowWriter;

/// Bytes buffered before a write is issued.
const WRITE_BUFFER: usize = 1 << 20;

/// The stdout CSV header, written once per process whatever the core count. Every core's
/// stdout sink passes through it when it opens, before it can write a row, so the header is
/// always the first line.
static STDOUT_HEADER: Once = Once::new();

/// How often a sink looks for completed checkpoints to commit while no rows arrive.
const COMMIT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs sink `index`'s instance (task `task`) on this core until every sender ended.
///
/// With checkpoints, a file sink is exactly-once: a part file is staged as
/// `<part>.pending-<n>` when checkpoint `n`'s barrier aligns (or when it rolls before that),
/// Counts a batch a sink received: rows and bytes in, its mailbox, and its end-to-end latency
/// when its rows carry an event time; returns (rows, bytes).
fn count_in(
    counters: &Counters,
    latency: &Latency,
    queued: usize,
    batch: &Batch,
) -> (usize, usize) {
    let (rows, bytes) = (batch.row_count(), batch.encoded_len());
    counters.batch_in(rows, bytes);
    counters.mailbox.store(queued as u64, Ordering::Relaxed);
    let newest = batch.header().max_event_time;
    if newest != i64::MIN {
        latency.observe(newest, crate::task::now_ms());
    }
    (rows, bytes)
}

/// and renamed to its final name once checkpoint `n` completes.
pub(crate) async fn run(cx: Rc<CoreCx>, index: usize, task: usize, mut inbox: Inbox) {
    let sink = &cx.plan.sinks[index];
    let node = cx.node(Head::Sink(index));
    let counters = &cx.probe.nodes[node].cores[cx.core];
    let latency = &cx.probe.nodes[node].latency[cx.core];
    let checkpoints = cx.checkpoints.clone();
    let epoch = checkpoints.as_ref().map(|c| c.completed() + 1);
    let mut output = match Output::open(&cx, sink, epoch) {
        Ok(output) => Some(output),
        Err(err) => {
            cx.failure.record(err);
            None
        }
    };
    if let Err(err) = Output::start(output.as_mut()).await {
        cx.failure.record(err);
        output = None;
    }
    loop {
        let next = match &checkpoints {
            None => inbox.next().await,
            Some(checkpoints) => {
                let polled = futures_lite::future::or(async { Some(inbox.next().await) }, async {
                    glommio::timer::sleep(COMMIT_POLL).await;
                    None
                })
                .await;
                if let Some(out) = output.as_mut() {
                    if let Err(err) = out.commit(checkpoints.completed()).await {
                        cx.failure.record(err);
                        output = None;
                    }
                }
                match polled {
                    Some(next) => next,
                    None => continue,
                }
            }
        };
        match next {
            Delivery::Closed => break,
            Delivery::Aligned(id) => {
                counters.aligned(inbox.take_alignment());
                let content = match output.as_mut() {
                    Some(out) => match out.stage(id + 1).await {
                        Ok(()) => AckContent::Passed,
                        Err(err) => {
                            let reason = err.to_string();
                            cx.failure.record(err);
                            output = None;
                            AckContent::Failed(reason)
                        }
                    },
                    None => AckContent::Failed("the sink failed".into()),
                };
                if let Some(checkpoints) = &checkpoints {
                    checkpoints.ack(Ack {
                        checkpoint: Some(id),
                        core: cx.core,
                        task,
                        content,
                    });
                }
            }
            Delivery::Message(Message::End { .. }) => {
                if inbox.all_ended() {
                    break;
                }
            }
            // Sinks write rows as they come; watermarks only matter to windows upstream.
            Delivery::Message(
                Message::Watermark { .. } | Message::Idle { .. } | Message::Barrier { .. },
            ) => {}
            Delivery::Message(Message::Batch { batch, .. }) => {
                let (rows, bytes) = count_in(counters, latency, inbox.queued(), &batch);
                if rows > 0 {
                    cx.probe.first_output();
                }
                let Some(out) = output.as_mut() else {
                    continue; // Failed earlier: keep draining so producers finish.
                };
                match out.write(&cx, &batch).await {
                    Ok(()) => counters.batch_out(rows, bytes),
                    Err(err) => {
                        cx.failure.record(err);
                        output = None;
                    }
                }
            }
        }
    }
    let closed = match output {
        Some(out) => out.close().await,
        None => Err(Error::io("<sink>", std::io::Error::other("failed earlier"))),
    };
    let failed = closed.is_err() || cx.failure.failed();
    if let Err(err) = closed {
        if !cx.failure.failed() {
            cx.failure.record(err);
        }
    }
    if let Some(checkpoints) = &checkpoints {
        let content = if failed {
            AckContent::Failed("the sink failed".into())
        } else {
            AckContent::Passed
        };
        checkpoints.ack(Ack {
            checkpoint: None,
            core: cx.core,
            task,
            content,
        });
    }
}

enum Output {
    Blackhole,
    Stdout {
        writer: RowWriter,
        buffer: Vec<u8>,
        closed: bool,
    },
    File(Box<PartFiles>),
    Kafka(Box<kafka::KafkaOutput>),
    Postgres(Box<postgres::PostgresOutput>),
    Elasticsearch(Box<elasticsearch::ElasticsearchOutput>),
    Mongodb(Box<mongodb::MongoOutput>),
}

impl Output {
    /// Opens the sink's output; `epoch` is the checkpoint the first rows belong to, when
    /// output is staged until checkpoints complete.
    fn open(cx: &CoreCx, sink: &PlanSink, epoch: Option<u64>) -> Result<Output, Error> {
        Ok(match &sink.kind {
            SinkKind::Stdout { format } => {
                let writer = RowWriter::new(*format, &sink.schema);
                let buffer = Vec::with_capacity(64 << 10);
                if *format == FileFormat::Csv {
                    STDOUT_HEADER.call_once(|| {
                        let mut header = Vec::new();
                        writer.header(&mut header);
                        // A closed stdout shows up again, and is handled, at the first row.
                        let _ = std::io::stdout().lock().write_all(&header);
                    });
                }
                Output::Stdout {
                    writer,
                    buffer,
                    closed: false,
                }
            }
            SinkKind::File(spec) => Output::File(Box::new(PartFiles::new(
                cx.core,
                spec,
                sink,
                (epoch, cx.fence),
            )?)),
            SinkKind::Kafka(_) => {
                Output::Kafka(Box::new(kafka::KafkaOutput::open(cx, sink, epoch)?))
            }
            SinkKind::Postgres(_) => {
                Output::Postgres(Box::new(postgres::PostgresOutput::open(cx, sink, epoch)?))
            }
            SinkKind::Elasticsearch(_) => {
                Output::Elasticsearch(Box::new(elasticsearch::Elasticsearch::open(cx, sink)?))
            }
            SinkKind::Mongodb(_) => Output::Mongodb(Box::new(mongodb::Mongodb::open(cx, sink)?)),
            _ => Output::Blackhole,
        })
    }

    /// Connects the sinks that talk to a server (with retries).
    async fn start(output: Option<&mut Output>) -> Result<(), Error> {
        match output {
            Some(Output::Kafka(kafka)) => kafka.start().await,
            Some(Output::Postgres(postgres)) => postgres.start().await,
            Some(Output::Elasticsearch(es)) => es.start().await,
            Some(Output::Mongodb(mongo)) => mongo.start().await,
            _ => Ok(()),
        }
    }

    async fn write(&mut self, cx: &CoreCx, batch: &Batch) -> Result<(), Error> {
        match self {
            Output::Blackhole => Ok(()),
            Output::Stdout {
                writer,
                buffer,
                closed,
            } => {
                if *closed {
                    return Ok(());
                }
                writer.write_batch(&batch.view(), buffer);
                // A pipe that is read slowly blocks the write; doing it on glommio's blocking
                // thread keeps the core running its other tasks, and the sink's mailbox fills
                // up, which is what suspends the producers (backpressure).
                let bytes = std::mem::take(buffer);
                let (mut bytes, result) = glommio::executor()
                    .spawn_blocking(move || {
                        let result = std::io::stdout().lock().write_all(&bytes);
                        (bytes, result)
                    })
                    .await;
                bytes.clear();
                *buffer = bytes;
                match result {
                    Ok(()) => Ok(()),
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                        // Whoever read our output has gone: stop reading input, finish cleanly.
                        tracing::info!("stdout closed; stopping the pipeline");
                        *closed = true;
                        cx.stop.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(err) => Err(Error::io("<stdout>", err)),
                }
            }
            Output::File(parts) => parts.write(batch).await,
            Output::Kafka(kafka) => kafka.write(batch).await,
            Output::Postgres(postgres) => postgres.write(batch).await,
            Output::Elasticsearch(es) => es.write(batch).await,
            Output::Mongodb(mongo) => mongo.write(batch).await,
        }
    }

    /// Pre-commits: everything written so far is made durable and staged for the checkpoint
    /// before `next_epoch`; later rows belong to `next_epoch`.
    async fn stage(&mut self, next_epoch: u64) -> Result<(), Error> {
        match self {
            Output::File(parts) => parts.stage(next_epoch).await,
            Output::Kafka(kafka) => kafka.stage(next_epoch).await,
            Output::Postgres(postgres) => postgres.stage(next_epoch).await,
            Output::Elasticsearch(es) => es.stage().await,
            Output::Mongodb(mongo) => mongo.stage().await,
            Output::Stdout { closed: false, .. } => std::io::stdout()
                .lock()
                .flush()
                .map_err(|err| Error::io("<stdout>", err)),
            _ => Ok(()),
        }
    }

    /// Publishes what was staged for checkpoints up to `completed`.
    async fn commit(&mut self, completed: u64) -> Result<(), Error> {
        match self {
            Output::File(parts) => parts.commit(completed).await,
            Output::Kafka(kafka) => kafka.commit(completed).await,
            Output::Postgres(postgres) => postgres.commit(completed).await,
            _ => Ok(()),
        }
    }

    async fn close(self) -> Result<(), Error> {
        match self {
            Output::Blackhole => Ok(()),
            Output::Stdout { closed, .. } => {
                if !closed {
                    std::io::stdout()
                        .lock()
                        .flush()
                        .map_err(|err| Error::io("<stdout>", err))?;
                }
                Ok(())
            }
            Output::File(parts) => parts.close().await,
            Output::Kafka(kafka) => kafka.close().await,
            Output::Postgres(postgres) => postgres.close().await,
            Output::Elasticsearch(es) => es.close().await,
            Output::Mongodb(mongo) => mongo.close().await,
        }
    }
}

/// Most partitions one core keeps a part file open for: opening one more first completes the
/// least recently used, so a sink never holds more than this many files per core.
const OPEN_PARTITIONS_MAX: usize = 64;

/// One core's rolling part files of a file sink: one open part per partition directory, or a
/// single one in the sink's directory itself without `partition_by`.
struct PartFiles {
    layout: Layout,
    parts: Parts,
    /// Parts staged and not yet published: (checkpoint, path of the staged file), oldest first.
    staged: Vec<(u64, PathBuf)>,
    /// Scratch for the partition name of a row.
    key: String,
}

/// What stays fixed while a file sink writes.
struct Layout {
    dir: PathBuf,
    core: usize,
    extension: &'static str,
    writer: RowWriter,
    header: bool,
    roll_bytes: u64,
    /// Evaluated per row; its sanitized text names the row's subdirectory of `dir`.
    partition_by: Option<Expr>,
}

/// How a finished part file is published.
#[derive(Debug, Clone, Copy)]
enum Publish {
    /// Under its final name at once.
    Now,
    /// As `<final name>.pending-<n>` (`.pending-<n>-v<fence>` with a fence), for checkpoint
    /// `n` to publish.
    Staged { checkpoint: u64, fence: Option<u64> },
}

/// The open parts, by partition directory name (`""` for the sink's directory itself).
struct Parts {
    open: HashMap<String, Part>,
    /// Sequence number of the next part; one counter per core across all partitions.
    next_seq: u64,
    /// How parts finished now are published.
    publish: Publish,
    /// The placement epoch written into staged names (a spread pipeline's version): settling
    /// publishes only the parts of the epoch that took the checkpoint, so parts a cut-off
    /// node of an older placement staged later are never published.
    fence: Option<u64>,
    /// Staged part files not yet published, with their checkpoint.
    staged: Vec<(u64, PathBuf)>,
    /// Ticks on every lookup; a part's `last_used` tells the least recently used.
    clock: u64,
}

/// A part file being written.
struct Part {
    file: BufferedFile,
    path: PathBuf,
    /// Bytes written to the file so far.
    written: u64,
    /// Rows encoded but not yet written.
    buffer: Vec<u8>,
    last_used: u64,
}

impl PartFiles {
    fn new(
        core: usize,
        spec: &FileSink,
        sink: &PlanSink,
        (epoch, fence): (Option<u64>, Option<u64>),
    ) -> Result<PartFiles, Error> {
        std::fs::create_dir_all(&spec.path).map_err(|err| Error::io(&spec.path, err))?;
        let extension = match spec.format {
            FileFormat::JsonLines => "jsonl",
            FileFormat::Csv => "csv",
        };
        let partitioned = sink.partition_by.is_some();
        let next_seq = next_part_seq(&spec.path, core, partitioned)?;
        let layout = Layout {
            dir: spec.path.clone(),
            core,
            extension,
            writer: RowWriter::new(spec.format, &sink.schema),
            header: spec.format == FileFormat::Csv && spec.csv_header,
            roll_bytes: spec.roll_bytes.max(1),
            partition_by: sink.partition_by.clone(),
        };
        let parts = Parts {
            open: HashMap::new(),
            next_seq,
            clock: 0,
            publish: epoch.map_or(Publish::Now, |checkpoint| Publish::Staged {
                checkpoint,
                fence,
            }),
            fence,
            staged: Vec::new(),
        };
        Ok(PartFiles {
            layout,
            parts,
            staged: Vec::new(),
            key: String::new(),
        })
    }

    /// Finishes every open part as staged for the current checkpoint and makes the staged
    /// names durable; parts opened from now on belong to `next_epoch`.
    async fn stage(&mut self, next_epoch: u64) -> Result<(), Error> {
        let open = std::mem::take(&mut self.parts.open);
        for (_, part) in open {
            part.finish(self.parts.publish, &mut self.parts.staged)
                .await?;
        }
        let mut dirs: Vec<PathBuf> = self
            .parts
            .staged
            .iter()
            .filter_map(|(_, path)| path.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            sync_dir(&dir).await?;
        }
        self.staged.append(&mut self.parts.staged);
        self.parts.publish = Publish::Staged {
            checkpoint: next_epoch,
            fence: self.parts.fence,
        };
        Ok(())
    }

    /// Renames the parts staged for checkpoints up to `completed` to their final names.
    async fn commit(&mut self, completed: u64) -> Result<(), Error> {
        let ready = self.staged.partition_point(|(id, _)| *id <= completed);
        if ready == 0 {
            return Ok(());
        }
        for (_, staged) in self.staged.drain(..ready) {
            let done = staged.with_extension("");
            glommio::io::rename(&staged, &done)
                .await
                .map_err(|err| Error::io(&staged, err.into()))?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        if self.layout.partition_by.is_some() {
            self.write_partitioned(batch).await?;
        } else {
            let part = self.parts.get(&self.layout, "").await?;
            self.layout
                .writer
                .write_batch(&batch.view(), &mut part.buffer);
            if part.written + part.buffer.len() as u64 >= self.layout.roll_bytes {
                return self.parts.finish("").await;
            }
        }
        if self.parts.buffered() >= WRITE_BUFFER {
            self.parts.flush_all().await?;
        }
        Ok(())
    }

    /// Appends each row to the part of its partition, rolling a part as soon as it is full.
    async fn write_partitioned(&mut self, batch: &Batch) -> Result<(), Error> {
        let Some(partition_by) = &self.layout.partition_by else {
            return Ok(());
        };
        let view = batch.view();
        for row in view.rows() {
            self.key.clear();
            partition_by.eval(row).write_text(&mut self.key);
            partition_dir_name(&mut self.key);
            let part = self.parts.get(&self.layout, &self.key).await?;
            self.layout.writer.write_row(row, &mut part.buffer);
            if part.written + part.buffer.len() as u64 >= self.layout.roll_bytes {
                self.parts.finish(&self.key).await?;
            }
        }
        Ok(())
    }

    /// Finishes every part: published at once without checkpoints, staged for the run's
    /// last checkpoint (which the coordinator commits) with them.
    async fn close(mut self) -> Result<(), Error> {
        let staging = matches!(self.parts.publish, Publish::Staged { .. });
        let result = self.parts.close_all().await;
        if staging {
            let dirs: Vec<PathBuf> = self
                .staged
                .iter()
                .chain(&self.parts.staged)
                .filter_map(|(_, path)| path.parent().map(Path::to_path_buf))
                .collect();
            for dir in dirs {
                sync_dir(&dir).await?;
            }
        }
        result
    }
}

/// Makes a directory's entries (new and renamed files) durable.
async fn sync_dir(dir: &Path) -> Result<(), Error> {
    let owned = dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || std::fs::File::open(&owned).and_then(|d| d.sync_all()))
        .await
        .map_err(|err| Error::io(dir, err))
}

impl Parts {
    /// The open part of partition `key`, created (after evicting the least recently used
    /// part when [`OPEN_PARTITIONS_MAX`] are open) when there is none.
    async fn get(&mut self, layout: &Layout, key: &str) -> Result<&mut Part, Error> {
        self.clock += 1;
        if !self.open.contains_key(key) {
            if self.open.len() >= OPEN_PARTITIONS_MAX {
                self.evict().await?;
            }
            let part = Part::create(layout, key, self.next_seq).await?;
            self.next_seq += 1;
            self.open.insert(key.to_string(), part);
        }
        let part = self.open.get_mut(key).expect("opened above");
        part.last_used = self.clock;
        Ok(part)
    }

    /// Completes the least recently used part.
    async fn evict(&mut self) -> Result<(), Error> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, part)| part.last_used)
            .map(|(key, _)| key.clone());
        match oldest {
            Some(key) => self.finish(&key).await,
            None => Ok(()),
        }
    }

    /// Completes the part of partition `key`, if one is open.
    async fn finish(&mut self, key: &str) -> Result<(), Error> {
        match self.open.remove(key) {
            Some(part) => part.finish(self.publish, &mut self.staged).await,
            None => Ok(()),
        }
    }

    /// Bytes encoded in all parts and not yet written.
    fn buffered(&self) -> usize {
        self.open.values().map(|part| part.buffer.len()).sum()
    }

    async fn flush_all(&mut self) -> Result<(), Error> {
        for part in self.open.values_mut() {
            part.flush().await?;
        }
        Ok(())
    }

    /// Completes every open part; on a failure the others are still completed, and the
    /// first error is returned.
    async fn close_all(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        for (_, part) in std::mem::take(&mut self.open) {
            let finished = part.finish(self.publish, &mut self.staged).await;
            if result.is_ok() {
                result = finished;
            }
        }
        result
    }
}

impl Part {
    /// Creates `part-<core>-<seq>.<ext>.inprogress` in the directory of partition `key`.
    async fn create(layout: &Layout, key: &str, seq: u64) -> Result<Part, Error> {
        debug_assert!(!key.contains('/') && key != "." && key != "..");
        let dir = if key.is_empty() {
            layout.dir.clone()
        } else {
            let dir = layout.dir.join(key);
            // One short metadata call per new part, on the data core: a part is opened
            // only when a partition first appears, rolls, or returns after an eviction.
            match std::fs::create_dir(&dir) {
                Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::io(&dir, err));
                }
                _ => dir,
            }
        };
        let name = part_name(layout.core, seq, layout.extension);
        let path = dir.join(format!("{name}.inprogress"));
        let file = BufferedFile::create(&path)
            .await
            .map_err(|err| Error::io(&path, err.into()))?;
        let mut buffer = Vec::new();
        if layout.header {
            layout.writer.header(&mut buffer);
        }
        Ok(Part {
            file,
            path,
            written: 0,
            buffer,
            last_used: 0,
        })
    }

    /// Writes the buffer to the file.
    async fn flush(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let len = self.buffer.len();
        let pending = std::mem::replace(&mut self.buffer, Vec::with_capacity(len));
        let n = self
            .file
            .write_at(pending, self.written)
            .await
            .map_err(|err| Error::io(&self.path, err.into()))?;
        self.written += n as u64;
        if n < len {
            // Regular files write short only when the device is full.
            let err = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write ({n} of {len} bytes): is the disk full?"),
            );
            return Err(Error::io(&self.path, err));
        }
        Ok(())
    }

    /// Flushes, syncs and publishes the part: under its final name, or staged (and added to
    /// `staged`).
    async fn finish(
        mut self,
        publish: Publish,
        staged: &mut Vec<(u64, PathBuf)>,
    ) -> Result<(), Error> {
        self.flush().await?;
        let io = |err: glommio::GlommioError<()>| Error::io(&self.path, err.into());
        self.file.fdatasync().await.map_err(io)?;
        self.file.close().await.map_err(io)?;
        let done = self.path.with_extension("");
        match publish {
            Publish::Now => glommio::io::rename(&self.path, &done).await.map_err(io)?,
            Publish::Staged { checkpoint, fence } => {
                let mut name = done.into_os_string();
                name.push(format!(".pending-{checkpoint}"));
                if let Some(fence) = fence {
                    name.push(format!("-v{fence}"));
                }
                let pending = PathBuf::from(name);
                glommio::io::rename(&self.path, &pending)
                    .await
                    .map_err(io)?;
                staged.push((checkpoint, pending));
            }
        }
        Ok(())
    }
}

/// Turns a row's partition value into one safe directory name, in place: `/` and NUL become
/// `_`, as does a leading `.` (so neither `.` nor `..` nor a hidden name can result), and an
/// empty value (also NULL) becomes `_`. A row can therefore never leave the sink's directory.
fn partition_dir_name(name: &mut String) {
    if name.contains(['/', '\0']) {
        *name = name.replace(['/', '\0'], "_");
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    if name.is_empty() {
        name.push('_');
    }
}

fn part_name(core: usize, seq: u64, extension: &str) -> String {
    format!("part-{core}-{seq:05}.{extension}")
}

/// The first sequence number after every part file `core` already has in `dir` (and, when
/// partitioned, in its subdirectories), so a new run never overwrites an earlier run's output.
fn next_part_seq(dir: &Path, core: usize, partitioned: bool) -> Result<u64, Error> {
    let prefix = format!("part-{core}-");
    let mut next = 0;
    let entries = std::fs::read_dir(dir).map_err(|err| Error::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if partitioned && is_dir {
            next = next.max(next_part_seq(&entry.path(), core, false)?);
            continue;
        }
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(seq) = digits.parse::<u64>() {
            next = next.max(seq + 1);
        }
    }
    Ok(next)
}

/// Settles the file sinks of `plan` after a crash or a finished run with checkpoints: parts
/// staged for checkpoints up to `completed` get their final names, later staged parts and
/// unfinished `.inprogress` parts are deleted (their rows come again from the restored
/// sources). Runs on the caller's thread before the data cores start, or after they stop.
/// Returns (published, deleted).
pub fn recover_file_sinks(
    plan: &wire_core::frontend::plan::Plan,
    completed: u64,
) -> Result<(usize, usize), Error> {
    let mut counts = (0, 0);
    for sink in &plan.sinks {
        let SinkKind::File(spec) = &sink.kind else {
            continue;
        };
        if !spec.path.exists() {
            continue;
        }
        settle_dir(
            &spec.path,
            (completed, None),
            (sink.partition_by.is_some(), None),
            &mut counts,
        )?;
    }
    Ok(counts)
}

/// [`recover_file_sinks`] for one node's part of a pipeline spread over nodes, whose nodes
/// write into subdirectories (`node-<id>`) of each file sink's path (in `plan`, each file
/// sink's path is this node's subdirectory, `own`, of the sink's path): settles every
/// part file in the subdirectory `own` (only this node writes there, and it writes nothing
/// while it settles), and the part files of `slots` (`part-<slot>-…`) in the subdirectories
/// of nodes that run no slot any more (not in `running`): a slot may have run there before.
/// `slots` are this node's slots and, when it runs slot 0, the pipeline's slot count: slots
/// from that number on ran only before the pipeline had fewer slots (a dead node's slots
/// dealt over fewer nodes), and slot 0's node settles their files. `fence` is the placement epoch that took checkpoint `completed`: parts staged under
/// another epoch (by a node cut off from an older placement, still writing) are deleted even
/// when their checkpoint id is not later. Returns (published, deleted).
pub fn recover_file_sink_slots(
    plan: &wire_core::frontend::plan::Plan,
    (completed, fence): (u64, u64),
    (own, running): (&str, &[String]),
    slots: Slots<'_>,
) -> Result<(usize, usize), Error> {
    let mut counts = (0, 0);
    for sink in &plan.sinks {
        let SinkKind::File(spec) = &sink.kind else {
            continue;
        };
        let Some(root) = spec.path.parent().filter(|root| root.exists()) else {
            continue;
        };
        let entries = std::fs::read_dir(root).map_err(|err| Error::io(root, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| Error::io(root, err))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| n.starts_with("node-")) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let only = if name == own {
                None
            } else if running.iter().any(|r| r == name) {
                continue;
            } else {
                Some(slots)
            };
            let filter = (sink.partition_by.is_some(), only);
            settle_dir(&entry.path(), (completed, Some(fence)), filter, &mut counts)?;
        }
    }
    Ok(counts)
}

/// The checkpoint and fence (placement epoch) of staged part file `name`
/// (`….pending-<n>` or `….pending-<n>-v<fence>`); `None` if it is not staged.
fn staged_part(name: &str) -> Option<(u64, Option<u64>)> {
    let (_, tail) = name.rsplit_once(".pending-")?;
    match tail.split_once("-v") {
        Some((id, fence)) => Some((id.parse().ok()?, Some(fence.parse().ok()?))),
        None => Some((tail.parse().ok()?, None)),
    }
}

/// Whether a part staged for `(checkpoint, fence)` is published when settling to the
/// completed checkpoint `kept` (id, and the fence that took it, if fences are checked).
fn publishes((checkpoint, fence): (u64, Option<u64>), kept: (u64, Option<u64>)) -> bool {
    let fenced_out = matches!((fence, kept.1), (Some(fence), Some(took)) if fence != took);
    checkpoint <= kept.0 && !fenced_out
}

/// Slots of a spread pipeline whose part files a node settles: those listed, and with a
/// number, every slot from it on.
pub type Slots<'a> = (&'a [usize], Option<usize>);

/// Whether part file `name` (`part-<slot>-<seq>…`) is of one of `slots`: those listed, and
/// with a number, every slot from it on.
fn of_slots(name: &str, (listed, from): Slots<'_>) -> bool {
    let slot = name
        .strip_prefix("part-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(slot, _)| slot.parse::<usize>().ok());
    slot.is_some_and(|slot| listed.contains(&slot) || from.is_some_and(|from| slot >= from))
}

/// Settles the part files in `dir` (and, when `partitioned`, in its partition directories),
/// only those of the given slots when some are given.
fn settle_dir(
    dir: &Path,
    kept: (u64, Option<u64>),
    (partitioned, slots): (bool, Option<Slots<'_>>),
    counts: &mut (usize, usize),
) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::io(dir, err))?;
    let mut changed = false;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        let path = entry.path();
        if partitioned && entry.file_type().is_ok_and(|t| t.is_dir()) {
            settle_dir(&path, kept, (false, slots), counts)?;
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("part-") || slots.is_some_and(|slots| !of_slots(name, slots)) {
            continue;
        }
        match staged_part(name) {
            Some(staged) if publishes(staged, kept) => {
                std::fs::rename(&path, path.with_extension(""))
                    .map_err(|err| Error::io(&path, err))?;
                counts.0 += 1;
            }
            Some(_) => {
                std::fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
                counts.1 += 1;
            }
            None if name.ends_with(".inprogress") => {
                std::fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
                counts.1 += 1;
            }
            None => continue,
        }
        changed = true;
    }
    if changed {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|err| Error::io(dir, err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::plan::Plan;
    use wire_core::frontend::spec::PipelineSpec;
    use wire_core::{BatchBuilder, PartitionId, StreamId, ValueRef};

    #[test]
    fn partition_values_never_name_a_path_outside_the_directory() {
        let cases = [
            ("2023-11-14-22", "2023-11-14-22"),
            ("a/b", "a_b"),
            ("../../etc", "_._.._etc"),
            ("..", "_."),
            (".", "_"),
            (".hidden", "_hidden"),
            ("/", "_"),
            ("nul\0x", "nul_x"),
            ("", "_"),
        ];
        for (value, dir) in cases {
            let mut name = value.to_string();
            partition_dir_name(&mut name);
            assert_eq!(name, dir, "{value:?}");
        }
    }

    /// A file sink with `partition_by: k` over rows `(k: string, v: i64)`, writing to `dir`.
    fn partitioned_sink(dir: &Path, roll_bytes: u64) -> (PlanSink, FileSink) {
        let yaml = format!(
            "sources: {{s: {{type: file, path: in.jsonl, schema: {{k: string, v: i64}}}}}}
sinks: {{out: {{type: file, from: s, path: '{}', roll_bytes: {roll_bytes}, partition_by: k}}}}",
            dir.display()
        );
        let spec = PipelineSpec::parse("t.yaml", &yaml).expect("spec");
        let sink = Plan::from_spec(&spec).expect("plan").sinks.remove(0);
        let SinkKind::File(file) = sink.kind.clone() else {
            panic!("not a file sink");
        };
        (sink, file)
    }

    fn batch(rows: &[(&str, i64)]) -> Batch {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        for (k, v) in rows {
            builder
                .push(&[ValueRef::Str(k), ValueRef::I64(*v)])
                .expect("row fits");
        }
        builder.finish()
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_part_is_of_the_slots_listed_or_from_the_slot_count_on() {
        let name = |slot: usize| format!("part-{slot}-00001.jsonl.pending-3-v2");
        assert!(of_slots(&name(1), (&[1, 4], None)));
        assert!(!of_slots(&name(2), (&[1, 4], None)));
        assert!(of_slots(&name(2), (&[0], Some(2))));
        assert!(of_slots(&name(7), (&[0], Some(2))));
        assert!(!of_slots(&name(1), (&[0], Some(2))));
        assert!(!of_slots("part-x-00001.jsonl", (&[0], Some(0))));
    }

    #[test]
    fn settling_publishes_only_the_parts_the_fence_that_took_the_checkpoint_staged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let names = [
            "part-0-00001.jsonl.pending-3-v2", // taken by version 2, up to 4: published
            "part-0-00002.jsonl.pending-4-v1", // a cut-off node of version 1: deleted
            "part-0-00003.jsonl.pending-5-v2", // checkpoint 5 never completed: deleted
            "part-1-00001.jsonl.pending-2",    // unfenced (a whole run): published
            "part-1-00002.jsonl.inprogress",   // unfinished: deleted
            "part-1-00000.jsonl",              // published earlier: kept
        ];
        for name in names {
            std::fs::write(dir.join(name), name).expect("write");
        }
        let mut counts = (0, 0);
        settle_dir(dir, (4, Some(2)), (false, None), &mut counts).expect("settle");
        assert_eq!(counts, (2, 3));
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "part-0-00001.jsonl",
                "part-1-00000.jsonl",
                "part-1-00001.jsonl"
            ]
        );
        // Without a fence to check (a pipeline on one node), the id alone decides.
        std::fs::write(dir.join("part-2-00001.jsonl.pending-4-v1"), "x").expect("write");
        settle_dir(dir, (4, None), (false, None), &mut counts).expect("settle");
        assert!(dir.join("part-2-00001.jsonl").exists());
    }

    #[test]
    fn rows_go_to_their_partition_and_at_most_64_parts_stay_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let (sink, spec) = partitioned_sink(&out, 1 << 20);
        let executor = wire_storage::io::local_executor().expect("executor");
        executor.run(async {
            let mut files = PartFiles::new(0, &spec, &sink, (None, None)).expect("open");
            // Round robin over 100 partitions: with 64 open, every second visit finds its
            // part evicted (completed) and starts a new one.
            for round in 0..2 {
                for k in 0..100 {
                    let rows = batch(&[(&format!("p{k}"), round * 100 + k)]);
                    files.write(&rows).await.expect("write");
                    assert!(files.parts.open.len() <= OPEN_PARTITIONS_MAX);
                }
            }
            let crafted = batch(&[("../escape", -1), ("/abs", -2), ("..", -3)]);
            files.write(&crafted).await.expect("write");
            files.close().await.expect("close");
        });
        assert_eq!(names(tmp.path()), ["out"]);
        for k in 0..100 {
            let dir = out.join(format!("p{k}"));
            let parts = names(&dir);
            assert_eq!(parts.len(), 2, "{parts:?}");
            let text: Vec<String> = parts
                .iter()
                .map(|p| std::fs::read_to_string(dir.join(p)).expect("part"))
                .collect();
            assert_eq!(text[0], format!("{{\"k\":\"p{k}\",\"v\":{k}}}\n"));
            assert_eq!(text[1], format!("{{\"k\":\"p{k}\",\"v\":{}}}\n", 100 + k));
        }
        let crafted = ["_.", "_._escape", "_abs"];
        assert!(crafted.iter().all(|d| names(&out.join(d)).len() == 1));
        assert_eq!(names(&out).len(), 103);
    }

    #[test]
    fn a_partition_rolls_after_the_row_that_fills_its_part() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out");
        let (sink, spec) = partitioned_sink(&out, 1);
        let executor = wire_storage::io::local_executor().expect("executor");
        executor.run(async {
            let mut files = PartFiles::new(3, &spec, &sink, (None, None)).expect("open");
            let rows = batch(&[("a", 1), ("b", 2), ("a", 3)]);
            files.write(&rows).await.expect("write");
            files.close().await.expect("close");
            // A second run continues numbering after the parts of the first.
            let mut files = PartFiles::new(3, &spec, &sink, (None, None)).expect("reopen");
            files.write(&batch(&[("b", 4)])).await.expect("write");
            files.close().await.expect("close");
        });
        let a = ["part-3-00000.jsonl", "part-3-00002.jsonl"];
        assert_eq!(names(&out.join("a")), a);
        let b = ["part-3-00001.jsonl", "part-3-00003.jsonl"];
        assert_eq!(names(&out.join("b")), b);
    }
}
