//! The file source: JSON lines or CSV from a file, or from every file of a directory (sorted
//! by name, file `i` is partition `i`, owned by core `i % cores`).
//!
//! Files are read through glommio in 256 KiB chunks and split into lines; each line decodes
//! into one row in place in the batch builder. A bounded source ends at the end of its files;
//! `tail: true` keeps polling for appended lines until the pipeline stops. A line that does not
//! decode fails the pipeline with file, line, column and field (`on_error: fail`), or is
//! counted as rejected and logged (`on_error: skip`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use glommio::io::BufferedFile;
use wire_core::frontend::spec::{FileFormat, FileSource, OnError};
use wire_core::record::format::{FormatError, RowReader};
use wire_core::{BatchBuilder, PartitionId, StreamId};

use wire_storage::checkpoint::SourcePosition;

use super::{owned_partitions, Emitter};
use crate::pipeline::CoreCx;
use crate::Error;

/// Bytes read per IO.
const READ_CHUNK: usize = 256 << 10;
/// How often a tailing source looks for appended lines.
const TAIL_POLL: Duration = Duration::from_millis(50);
/// Rejected lines logged one by one before logging only every thousandth.
const REJECTS_LOGGED: u64 = 10;

pub(super) async fn run(
    cx: &CoreCx,
    index: usize,
    spec: &FileSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let files = input_files(&spec.path)?;
    let source = &cx.plan.sources[index];
    let mut readers = Vec::new();
    let partitions = files.len() as u32;
    let mine = owned_partitions(cx, partitions);
    emitter.own_partitions(&mine);
    let restored = emitter.restored().cloned();
    for partition in mine {
        let path = &files[partition as usize];
        let file = BufferedFile::open(path)
            .await
            .map_err(|err| Error::io(path, err.into()))?;
        readers.push(FileReader {
            cx,
            spec,
            path,
            file,
            pos: 0,
            carry: Vec::with_capacity(READ_CHUNK),
            done: false,
            rows: RowReader::new(
                spec.format,
                &source.schema,
                source.event_time,
                spec.csv_header,
            ),
            builder: BatchBuilder::with_capacity(
                StreamId(index as u32),
                PartitionId(partition),
                256 << 10,
            ),
            line_no: 0,
            rejected: 0,
            partition,
        });
        let saved = restored
            .as_ref()
            .and_then(|s| s.positions.iter().find(|at| at.partition == partition));
        if let (Some(saved), Some(reader)) = (saved, readers.last_mut()) {
            reader.resume(saved.position, saved.line).await?;
        }
    }
    // Files are read a chunk at a time in turn, so a tailed file never starves the others.
    let result = read_in_turn(cx, &mut readers, partitions, emitter).await;
    for reader in readers {
        let _ = reader.file.close().await;
    }
    result
}

async fn read_in_turn(
    cx: &CoreCx,
    readers: &mut [FileReader<'_>],
    partitions: u32,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    while !cx.stopping() && readers.iter().any(|r| !r.done) {
        while let Some(id) = emitter.barrier_due() {
            for reader in readers.iter_mut() {
                reader.flush(emitter).await?;
            }
            let positions = readers.iter().map(FileReader::position).collect();
            emitter.inject(id, partitions, positions).await;
        }
        if emitter.held() {
            emitter.hold().await;
            continue;
        }
        let mut progressed = false;
        for reader in readers.iter_mut().filter(|r| !r.done) {
            progressed |= reader.step(emitter).await?;
        }
        if !progressed && readers.iter().any(|r| !r.done) {
            emitter.tick().await;
            glommio::timer::sleep(TAIL_POLL).await;
        }
    }
    for reader in readers.iter_mut() {
        reader.flush(emitter).await?;
    }
    let positions = readers.iter().map(FileReader::position).collect();
    emitter.finished(partitions, positions);
    Ok(())
}

/// The files of `path`: itself, or a directory's regular files sorted by name (hidden files
/// and `.inprogress` parts are skipped).
fn input_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(path).map_err(|err| Error::io(path, err))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|err| Error::io(path, err))? {
        let entry = entry.map_err(|err| Error::io(path, err))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !name.starts_with('.') && !name.ends_with(".inprogress") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

struct FileReader<'a> {
    cx: &'a CoreCx,
    spec: &'a FileSource,
    path: &'a Path,
    file: BufferedFile,
    /// Bytes of the file read so far.
    pos: u64,
    /// The start of a line whose newline has not been read yet.
    carry: Vec<u8>,
    /// A bounded file read to its end.
    done: bool,
    rows: RowReader,
    builder: BatchBuilder,
    line_no: u64,
    rejected: u64,
    partition: u32,
}

impl FileReader<'_> {
    /// Where the next row starts: the bytes and lines consumed into emitted rows (call after
    /// `flush`).
    fn position(&self) -> SourcePosition {
        SourcePosition {
            partition: self.partition,
            position: self.pos - self.carry.len() as u64,
            line: self.line_no,
            token: None,
        }
    }

    /// Continues a restored read at byte `position` after `line` lines; a CSV header is read
    /// again from the file's first line.
    async fn resume(&mut self, position: u64, line: u64) -> Result<(), Error> {
        if position > 0 && self.rows.expects_header() {
            let chunk = self
                .file
                .read_at(0, READ_CHUNK)
                .await
                .map_err(|err| Error::io(self.path, err.into()))?;
            let end = memchr(b'\n', &chunk).unwrap_or(chunk.len());
            let first = chunk[..end].strip_suffix(b"\r").unwrap_or(&chunk[..end]);
            let header = std::str::from_utf8(first).map_err(|_| Error::Decode {
                path: self.path.to_path_buf(),
                detail: "line 1: the CSV header is not valid UTF-8".into(),
            })?;
            self.rows
                .decode_header(header)
                .map_err(|err| self.fail(err))?;
        }
        self.pos = position;
        self.line_no = line;
        Ok(())
    }

    /// Reads and decodes one chunk; `false` when there was nothing new to read.
    async fn step(&mut self, emitter: &mut Emitter) -> Result<bool, Error> {
        let chunk = self
            .file
            .read_at(self.pos, READ_CHUNK)
            .await
            .map_err(|err| Error::io(self.path, err.into()))?;
        if chunk.is_empty() {
            if !self.spec.tail {
                // A bounded file's last line may lack its newline.
                if !self.carry.is_empty() {
                    let last = std::mem::take(&mut self.carry);
                    self.line(&last, emitter)?;
                }
                self.done = true;
            }
            // End of what is written so far: do not hold rows back waiting for more.
            self.flush(emitter).await?;
            return Ok(false);
        }
        self.pos += chunk.len() as u64;
        self.carry.extend_from_slice(&chunk);
        let batch_rows = self.cx.plan.settings.batch_rows;
        let mut start = 0;
        while let Some(end) = memchr(b'\n', &self.carry[start..]) {
            let line_end = start + end;
            let line = std::mem::take(&mut self.carry);
            let result = self.line(&line[start..line_end], emitter);
            self.carry = line;
            result?;
            start = line_end + 1;
            if self.builder.row_count() >= batch_rows {
                self.flush(emitter).await?;
            }
        }
        self.carry.drain(..start);
        glommio::yield_if_needed().await;
        Ok(true)
    }

    /// Decodes one line into the builder.
    fn line(&mut self, bytes: &[u8], emitter: &Emitter) -> Result<(), Error> {
        self.line_no += 1;
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let result = match std::str::from_utf8(bytes) {
            Err(err) => Err(FormatError {
                line: self.line_no,
                column: Some(err.valid_up_to() + 1),
                field: None,
                message: "the line is not valid UTF-8".into(),
            }),
            Ok(line)
                if self.line_no == 1
                    && self.spec.format == FileFormat::Csv
                    && self.spec.csv_header =>
            {
                return self.rows.decode_header(line).map_err(|err| self.fail(err));
            }
            Ok(line) if line.trim().is_empty() => return Ok(()),
            Ok(line) => self.rows.decode_line(self.line_no, line, &mut self.builder),
        };
        emitter.events(1);
        match result {
            Ok(()) => Ok(()),
            Err(err) if self.spec.on_error == OnError::Skip => {
                self.rejected += 1;
                emitter.rejected(1);
                if self.rejected <= REJECTS_LOGGED || self.rejected.is_multiple_of(1000) {
                    tracing::warn!(file = %self.path.display(), rejected = self.rejected, error = %err, "skipping a line that does not decode");
                }
                Ok(())
            }
            Err(err) => Err(self.fail(err)),
        }
    }

    fn fail(&self, err: FormatError) -> Error {
        Error::Decode {
            path: self.path.to_path_buf(),
            detail: err.to_string(),
        }
    }

    async fn flush(&mut self, emitter: &mut Emitter) -> Result<(), Error> {
        if !self.builder.is_empty() {
            emitter.emit(self.builder.finish()).await?;
        }
        Ok(())
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}
