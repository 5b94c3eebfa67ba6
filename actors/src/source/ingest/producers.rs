//! Idempotent producers of one ingest source on this node (docs/protocol.md, "Idempotent
//! producers"): the producer ids the node issues, and per producer its epoch and the last
//! batch sequence number appended to any of the source's partitions here, so that a batch
//! re-sent after a lost connection or a restart is acked again instead of appended twice.
//!
//! The state is shared by the source's cores (the kernel hands a reconnecting producer to any
//! of them), bounded to [`PRODUCERS_MAX`] producers, and rebuilt at start from the tails of the
//! partitions' WALs, whose batch headers carry the producer id, epoch and sequence number:
//! nothing else is persisted except the id counter.
//!
//! A producer id is 48 bits: the issuing node's id in the high [`NODE_ID_BITS`] and a counter
//! of that node and source in the low [`ID_COUNTER_BITS`] (`wire run` is node 0), so two nodes
//! of a cluster never issue the same id.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use wire_core::record::batch::PRODUCER_ID_MAX;
use wire_core::BatchHeader;
use wire_net::ingest::ErrorCode;

/// Producers remembered per source per node; the least recently used one beyond it is
/// forgotten, and its re-sent batches are refused with `UnknownProducer`.
pub(crate) const PRODUCERS_MAX: usize = 1024;
/// Producer ids taken from the counter file at a time (one write and fsync per block).
const ID_BLOCK: u64 = 4096;
/// Name of the counter file in the source's data directory.
pub(crate) const IDS_FILE: &str = "producer-ids";
/// Low bits of a producer id: the issuing node's counter (ids 1 ..= 2^32 - 1 per node).
pub const ID_COUNTER_BITS: u32 = 32;
/// High bits of a producer id: the issuing node's id, so node ids go up to 2^16 - 1.
pub const NODE_ID_BITS: u32 = 48 - ID_COUNTER_BITS;
/// The largest node id whose producer ids fit (a node with a larger id is refused at start).
pub const NODE_ID_MAX: u64 = (1 << NODE_ID_BITS) - 1;
const ID_COUNTER_MAX: u64 = (1 << ID_COUNTER_BITS) - 1;

/// Where one appended batch landed: what a duplicate of it is acked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub(crate) sequence: u32,
    pub(crate) partition: u32,
    pub(crate) base_offset: u64,
    pub(crate) rows: u32,
}

/// What to do with an idempotent producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The next sequence number: append it, then call [`Producers::complete`] (or `abort`).
    Append,
    /// Already appended: ack it again with these offsets, append nothing.
    Duplicate(Appended),
    /// Another connection of the producer is appending a batch; ask again shortly.
    Wait,
}

/// A refusal: the Error frame's code and message.
pub(crate) type Refusal = (ErrorCode, String);

#[derive(Debug)]
struct Producer {
    epoch: u16,
    /// Last sequence number appended; 0 before the first.
    last: u32,
    /// False for a producer resumed without state (forgotten, or from another node): only
    /// sequence 1 is accepted until something is appended.
    known: bool,
    /// The last appended batches, oldest first, at most `window`.
    recent: VecDeque<Appended>,
    /// A sequence number being appended now.
    pending: Option<u32>,
    /// The connection that may append; a newer Hello of the producer takes over.
    owner: u64,
    used: u64,
}

#[derive(Debug)]
struct Table {
    map: HashMap<u64, Producer>,
    tick: u64,
    next_conn: u64,
    ids: Ids,
}

/// The idempotent producers of one source on this node.
#[derive(Debug)]
pub(crate) struct Producers {
    table: Mutex<Table>,
    /// Duplicates remembered per producer (the source's credits: at most that many batches
    /// are unacked, and only unacked batches are re-sent).
    window: usize,
    /// Cores that have not yet rebuilt their partition's state from its WAL.
    recovering: AtomicUsize,
}

impl Producers {
    /// The producers of the source whose data directory is `dir`, on node `node` (0 for
    /// `wire run`; at most [`NODE_ID_MAX`], larger ones issue ids of node `node` mod 2^16).
    pub(crate) fn new(dir: PathBuf, window: usize, cores: usize, node: u64) -> Producers {
        Producers {
            table: Mutex::new(Table {
                map: HashMap::new(),
                tick: 0,
                next_conn: 1,
                ids: Ids {
                    file: dir.join(IDS_FILE),
                    node: (node & NODE_ID_MAX) << ID_COUNTER_BITS,
                    next: 0,
                    end: 0,
                },
            }),
            window: window.max(1),
            recovering: AtomicUsize::new(cores),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every partition's WAL has been scanned (idempotent Hellos wait for it).
    pub(crate) fn recovered(&self) -> bool {
        self.recovering.load(Ordering::Acquire) == 0
    }

    /// Marks one partition's WAL scanned.
    pub(crate) fn partition_recovered(&self) {
        let _ = self
            .recovering
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Registers an idempotent session: a new producer (`id` 0) or a resumed one. Returns
    /// the producer id, epoch and the connection's token for [`Producers::begin`].
    pub(crate) fn hello(&self, id: u64, epoch: u16) -> Result<(u64, u16, u64), Refusal> {
        let mut table = self.lock();
        table.tick += 1;
        let (tick, conn) = (table.tick, table.next_conn);
        table.next_conn += 1;
        if id == 0 {
            let id = table.ids.next().map_err(|error| {
                let file = table.ids.file.display().to_string();
                let message = format!("cannot issue a producer id: {file}: {error}");
                (ErrorCode::Internal, message)
            })?;
            table.insert(id, Producer::new(0, true, conn, tick));
            return Ok((id, 0, conn));
        }
        if id > PRODUCER_ID_MAX {
            let message = format!("producer id {id} is above 2^48 - 1");
            return Err((ErrorCode::ProtocolViolation, message));
        }
        match table.map.get_mut(&id) {
            Some(producer) if epoch < producer.epoch => Err((
                ErrorCode::ProducerFenced,
                format!(
                    "producer {id} epoch {epoch} is fenced: epoch {} is current",
                    producer.epoch
                ),
            )),
            Some(producer) => {
                if epoch > producer.epoch {
                    // A new epoch starts the sequence numbers again.
                    *producer = Producer::new(epoch, true, conn, tick);
                }
                producer.owner = conn;
                producer.used = tick;
                Ok((id, epoch, conn))
            }
            None => {
                table.insert(id, Producer::new(epoch, false, conn, tick));
                Ok((id, epoch, conn))
            }
        }
    }

    /// Decides what to do with batch `sequence` of producer `id` arriving on connection `conn`.
    pub(crate) fn begin(&self, id: u64, sequence: u32, conn: u64) -> Result<Admit, Refusal> {
        let mut table = self.lock();
        table.tick += 1;
        let tick = table.tick;
        let window = self.window;
        let Some(producer) = table.map.get_mut(&id) else {
            return Err(forgotten(id, sequence));
        };
        producer.used = tick;
        if producer.owner != conn {
            let message = format!("producer {id}: a newer connection of this producer took over");
            return Err((ErrorCode::ProducerFenced, message));
        }
        if producer.pending.is_some() {
            return Ok(Admit::Wait);
        }
        let last = producer.last;
        if !producer.known && sequence != 1 {
            return Err(forgotten(id, sequence));
        }
        if sequence != 0 && sequence <= last {
            let found = producer.recent.iter().find(|a| a.sequence == sequence);
            return match found {
                Some(appended) => Ok(Admit::Duplicate(*appended)),
                None => Err((
                    ErrorCode::OutOfOrderSequence,
                    format!("producer {id}: batch {sequence} was appended already and is older than the last {window} batches, whose acks are kept"),
                )),
            };
        }
        if u64::from(sequence) != u64::from(last) + 1 {
            let expected = u64::from(last) + 1;
            let message = format!("producer {id}: expected batch sequence {expected}, found {sequence} (a gap: batches were lost)");
            return Err((ErrorCode::OutOfOrderSequence, message));
        }
        producer.pending = Some(sequence);
        Ok(Admit::Append)
    }

    /// Records the batch [`Producers::begin`] admitted as appended.
    pub(crate) fn complete(&self, id: u64, appended: Appended) {
        let mut table = self.lock();
        if let Some(producer) = table.map.get_mut(&id) {
            producer.pending = None;
            producer.record(appended, self.window);
        }
    }

    /// Forgets the pending batch after a failed append.
    pub(crate) fn abort(&self, id: u64) {
        if let Some(producer) = self.lock().map.get_mut(&id) {
            producer.pending = None;
        }
    }

    /// Adds what a batch read back from `partition`'s WAL says about its producer.
    pub(crate) fn recover(&self, header: &BatchHeader, partition: u32) {
        let id = header.producer_id();
        if id == 0 || header.sequence == 0 {
            return;
        }
        let epoch = header.producer_epoch();
        let mut table = self.lock();
        table.tick += 1;
        let tick = table.tick;
        table.ids.note_used(id);
        let producer = table
            .map
            .entry(id)
            .or_insert_with(|| Producer::new(epoch, true, 0, tick));
        if epoch > producer.epoch {
            *producer = Producer::new(epoch, true, 0, tick);
        } else if epoch < producer.epoch {
            return;
        }
        producer.record(
            Appended {
                sequence: header.sequence,
                partition,
                base_offset: header.base_offset,
                rows: header.row_count,
            },
            self.window,
        );
        table.evict();
    }
}

fn forgotten(id: u64, sequence: u32) -> Refusal {
    let message = format!("producer {id} has no sequence state on this node (never appended here, or forgotten: at most {PRODUCERS_MAX} producers are kept per source), so batch {sequence} may be a duplicate; connect as a new producer");
    (ErrorCode::UnknownProducer, message)
}

impl Producer {
    fn new(epoch: u16, known: bool, owner: u64, used: u64) -> Producer {
        Producer {
            epoch,
            last: 0,
            known,
            recent: VecDeque::new(),
            pending: None,
            owner,
            used,
        }
    }

    /// Notes an appended batch. Batches of one producer may be recovered from several
    /// partitions in any order, so the highest sequence wins and `recent` keeps the highest.
    fn record(&mut self, appended: Appended, window: usize) {
        self.known = true;
        self.last = self.last.max(appended.sequence);
        let at = self
            .recent
            .iter()
            .position(|a| a.sequence > appended.sequence)
            .unwrap_or(self.recent.len());
        self.recent.insert(at, appended);
        while self.recent.len() > window {
            self.recent.pop_front();
        }
    }
}

impl Table {
    fn insert(&mut self, id: u64, producer: Producer) {
        self.map.insert(id, producer);
        self.evict();
    }

    /// Forgets the least recently used producers beyond [`PRODUCERS_MAX`] (not one appending).
    fn evict(&mut self) {
        while self.map.len() > PRODUCERS_MAX {
            let oldest = self
                .map
                .iter()
                .filter(|(_, p)| p.pending.is_none())
                .min_by_key(|(_, p)| p.used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    tracing::debug!(producer = id, "idempotent producer forgotten");
                    self.map.remove(&id);
                }
                None => break,
            }
        }
    }
}

/// Producer ids issued by this node for one source: the node's id in the high bits, and a
/// counter persisted in blocks in the file `producer-ids` of the source's data directory, so
/// ids are never issued twice, even across restarts (a crash skips the rest of a block). The
/// file holds the counter only (the low [`ID_COUNTER_BITS`]).
#[derive(Debug)]
struct Ids {
    file: PathBuf,
    /// The node's id, shifted into the high bits.
    node: u64,
    /// The next counter value and the end of the block in use.
    next: u64,
    end: u64,
}

impl Ids {
    fn next(&mut self) -> std::io::Result<u64> {
        if self.next >= self.end {
            let start = read_counter(&self.file)?.max(self.next).max(1);
            let end = start + ID_BLOCK;
            if end > ID_COUNTER_MAX {
                return Err(std::io::Error::other("producer ids exhausted"));
            }
            write_counter(&self.file, end)?;
            (self.next, self.end) = (start, end);
        }
        let id = self.node | self.next;
        self.next += 1;
        Ok(id)
    }

    /// A recovered id: never issue it again (the counter file could be older than the WAL).
    /// Ids issued by other nodes do not touch this node's counter.
    fn note_used(&mut self, id: u64) {
        if id & !ID_COUNTER_MAX != self.node {
            return;
        }
        let id = id & ID_COUNTER_MAX;
        if id >= self.next {
            // Past the block in use, the next id comes from a new block, which starts above
            // every id ever issued (the file's counter) and above this one.
            self.next = id + 1;
            self.end = self.end.max(self.next);
        }
    }
}

fn read_counter(file: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(file) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other(format!("not a counter: {:?}", text.trim()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

/// Replaces the counter file atomically and durably: temp file, fsync, rename, fsync dir.
fn write_counter(file: &Path, value: u64) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = file.with_extension("tmp");
    let mut out = std::fs::File::create(&temp)?;
    writeln!(out, "{value}")?;
    out.sync_all()?;
    std::fs::rename(&temp, file)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
