//! Sinks: every core runs one instance of every sink, fed by its mailbox.
//!
//! - `blackhole` counts rows and drops them;
//! - `stdout` writes rows as JSON lines or CSV, one locked write per batch so lines from
//!   different cores never interleave; a closed pipe (`wire run … | head`) stops the pipeline
//!   gracefully instead of failing it;
//! - `file` writes rolling part files `part-<core>-<seq>.<ext>` into a directory: each is
//!   written as `<name>.inprogress`, synced, and renamed when it reaches `roll_bytes` or the
//!   run ends, so a file without the suffix is always complete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Once;

use glommio::channels::local_channel::LocalReceiver;
use glommio::io::BufferedFile;
use wire_core::plan::PlanSink;
use wire_core::spec::{FileFormat, FileSink, SinkKind};
use wire_core::Batch;

use crate::graph::Head;
use crate::message::Message;
use crate::probe::Counters;
use crate::runtime::CoreCx;
use crate::Error;
use wire_core::format::RowWriter;

/// Bytes buffered before a write is issued.
const WRITE_BUFFER: usize = 1 << 20;

/// The stdout CSV header, written once per process whatever the core count. Every core's
/// stdout sink passes through it when it opens, before it can write a row, so the header is
/// always the first line.
static STDOUT_HEADER: Once = Once::new();

/// Runs sink `index`'s instance on this core until every sender ended.
pub(crate) async fn run(
    cx: Rc<CoreCx>,
    index: usize,
    mailbox: LocalReceiver<Message>,
    senders: usize,
) {
    let sink = &cx.plan.sinks[index];
    let node = cx.node(Head::Sink(index));
    let counters = &cx.probe.nodes[node].cores[cx.core];
    let mut output = match Output::open(&cx, sink) {
        Ok(output) => Some(output),
        Err(err) => {
            cx.failure.record(err);
            None
        }
    };
    let mut ends = 0;
    while ends < senders {
        match mailbox.recv().await {
            None => break,
            Some(Message::End) => ends += 1,
            Some(Message::Batch(batch)) => {
                let rows = batch.row_count() as u64;
                Counters::add(&counters.rows_in, rows);
                let Some(out) = output.as_mut() else {
                    continue; // Failed earlier: keep draining so producers finish.
                };
                match out.write(&cx, &batch).await {
                    Ok(()) => Counters::add(&counters.rows_out, rows),
                    Err(err) => {
                        cx.failure.record(err);
                        output = None;
                    }
                }
            }
        }
    }
    if let Some(out) = output {
        if let Err(err) = out.close().await {
            cx.failure.record(err);
        }
    }
}

enum Output {
    Blackhole,
    Stdout {
        writer: RowWriter,
        buffer: Vec<u8>,
        closed: bool,
    },
    File(PartFiles),
}

impl Output {
    fn open(cx: &CoreCx, sink: &PlanSink) -> Result<Output, Error> {
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
            SinkKind::File(spec) => Output::File(PartFiles::new(cx.core, spec, sink)?),
            _ => Output::Blackhole,
        })
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
                let result = std::io::stdout().lock().write_all(buffer);
                buffer.clear();
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
        }
    }
}

/// One core's rolling part files of a file sink.
struct PartFiles {
    dir: PathBuf,
    core: usize,
    extension: &'static str,
    writer: RowWriter,
    header: bool,
    roll_bytes: u64,
    next_seq: u64,
    buffer: Vec<u8>,
    part: Option<Part>,
}

/// The part file being written.
struct Part {
    file: BufferedFile,
    path: PathBuf,
    /// Bytes written to the file so far.
    written: u64,
}

impl PartFiles {
    fn new(core: usize, spec: &FileSink, sink: &PlanSink) -> Result<PartFiles, Error> {
        std::fs::create_dir_all(&spec.path).map_err(|err| Error::io(&spec.path, err))?;
        let extension = match spec.format {
            FileFormat::JsonLines => "jsonl",
            FileFormat::Csv => "csv",
        };
        let next_seq = next_part_seq(&spec.path, core)?;
        Ok(PartFiles {
            dir: spec.path.clone(),
            core,
            extension,
            writer: RowWriter::new(spec.format, &sink.schema),
            header: spec.format == FileFormat::Csv && spec.csv_header,
            roll_bytes: spec.roll_bytes.max(1),
            next_seq,
            buffer: Vec::with_capacity(WRITE_BUFFER + (64 << 10)),
            part: None,
        })
    }

    async fn write(&mut self, batch: &Batch) -> Result<(), Error> {
        if self.part.is_none() {
            self.start_part().await?;
        }
        self.writer.write_batch(&batch.view(), &mut self.buffer);
        let written = self.part.as_ref().map_or(0, |p| p.written);
        if written + self.buffer.len() as u64 >= self.roll_bytes {
            self.finish_part().await
        } else if self.buffer.len() >= WRITE_BUFFER {
            self.flush().await
        } else {
            Ok(())
        }
    }

    async fn start_part(&mut self) -> Result<(), Error> {
        let name = part_name(self.core, self.next_seq, self.extension);
        self.next_seq += 1;
        let path = self.dir.join(format!("{name}.inprogress"));
        let file = BufferedFile::create(&path)
            .await
            .map_err(|err| Error::io(&path, err.into()))?;
        if self.header {
            self.writer.header(&mut self.buffer);
        }
        self.part = Some(Part {
            file,
            path,
            written: 0,
        });
        Ok(())
    }

    /// Writes the buffer to the current part.
    async fn flush(&mut self) -> Result<(), Error> {
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        if self.buffer.is_empty() {
            return Ok(());
        }
        let pending = std::mem::replace(&mut self.buffer, Vec::with_capacity(WRITE_BUFFER));
        let len = pending.len();
        let n = part
            .file
            .write_at(pending, part.written)
            .await
            .map_err(|err| Error::io(&part.path, err.into()))?;
        part.written += n as u64;
        if n < len {
            // Regular files write short only when the device is full.
            let err = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write ({n} of {len} bytes): is the disk full?"),
            );
            return Err(Error::io(&part.path, err));
        }
        Ok(())
    }

    /// Flushes, syncs and publishes the current part under its final name.
    async fn finish_part(&mut self) -> Result<(), Error> {
        self.flush().await?;
        let Some(part) = self.part.take() else {
            return Ok(());
        };
        let io = |err: glommio::GlommioError<()>| Error::io(&part.path, err.into());
        part.file.fdatasync().await.map_err(io)?;
        part.file.close().await.map_err(io)?;
        let done = part.path.with_extension("");
        glommio::io::rename(&part.path, &done).await.map_err(io)?;
        Ok(())
    }

    async fn close(mut self) -> Result<(), Error> {
        self.finish_part().await
    }
}

fn part_name(core: usize, seq: u64, extension: &str) -> String {
    format!("part-{core}-{seq:05}.{extension}")
}

/// The first sequence number after every part file `core` already has in `dir`, so a new
/// run never overwrites an earlier run's output.
fn next_part_seq(dir: &Path, core: usize) -> Result<u64, Error> {
    let prefix = format!("part-{core}-");
    let mut next = 0;
    let entries = std::fs::read_dir(dir).map_err(|err| Error::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
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
