//! The data plane's side of checkpoints (asynchronous barrier snapshots, as in Flink).
//!
//! The coordinator (control plane) raises [`Checkpointing::request`]; every source instance
//! sees it between batches, records its positions, acks, and sends `Barrier { id }` down every
//! route, after the rows before it. A task with several senders *aligns*: once a sender's
//! barrier arrived, that sender's later messages are held back until every other sender's
//! barrier (or `End`) arrived too. Then the task snapshots its state — a copy into bytes on
//! the core; the coordinator writes it out on its own threads — acks with the copy, forwards
//! the barrier and replays what it held. A sink pre-commits its staged output when aligned,
//! and commits it once [`Checkpointing::completed`] reaches the checkpoint.
//!
//! When an instance ends it sends a final ack (`checkpoint: None`) with its last positions or
//! state; the coordinator counts it for every later checkpoint, and the run's last
//! checkpoint is made of them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use glommio::channels::local_channel::LocalReceiver;
use wire_core::state::snapshot::Section;
use wire_core::time::watermark::SenderId;
use wire_storage::checkpoint::{Checkpoint, InstanceState, SourcePosition};

use crate::message::Message;

/// What the coordinator and the data cores share.
#[derive(Debug)]
pub struct Checkpointing {
    requested: AtomicU64,
    /// The last checkpoint id before this run: sources owe barriers for every later one, also
    /// for those requested before they started.
    initial: u64,
    /// The checkpoint the requested one may build on (0: none).
    base: AtomicU64,
    completed: Arc<AtomicU64>,
    retained: AtomicU64,
    acks: crossbeam_channel::Sender<Ack>,
    /// The checkpoint to restore, its operators' state moved to `state`.
    restore: Option<Checkpoint>,
    /// The restored operators' state by name, until every core has restored its part.
    state: Mutex<Option<Arc<RestoredState>>>,
    /// Cores that have not restored their part yet.
    restoring: AtomicUsize,
    /// When the cores began restoring, and nanoseconds until the last one had (0 until then).
    restore_began: Mutex<Option<std::time::Instant>>,
    restore_ns: AtomicU64,
    /// The restored checkpoint, if operator instances that restored their old state may
    /// write their changes since as a delta on it.
    continuing: Option<u64>,
}

/// A restored checkpoint's operator state: each operator's instances by operator name.
pub(crate) type RestoredState = HashMap<String, Vec<InstanceState>>;

/// One task instance's part of a checkpoint.
#[derive(Debug)]
pub struct Ack {
    /// The checkpoint, or `None` for the instance's final ack as it ends.
    pub checkpoint: Option<u64>,
    /// The core.
    pub core: usize,
    /// The task (index in the physical graph).
    pub task: usize,
    /// What the instance contributes.
    pub content: AckContent,
}

/// What an instance contributes to a checkpoint.
#[derive(Debug)]
pub enum AckContent {
    /// A source instance's positions in the partitions it owns.
    Source {
        /// The source's name.
        name: String,
        /// Partitions of the source over all cores.
        partitions: u32,
        /// Position per owned partition.
        positions: Vec<SourcePosition>,
    },
    /// A stateful operator instance's snapshot, one section per key group it holds (or, for
    /// a delta, changed).
    Operator {
        /// The operator's name.
        name: String,
        /// Its kind, checked when restoring.
        kind: String,
        /// The snapshot.
        sections: Vec<Section>,
        /// `Some(base)` if `sections` hold only the changes since this instance's snapshot
        /// for checkpoint `base`; `None` for its whole state.
        delta_of: Option<u64>,
    },
    /// A task without state (stateless chain or sink) has passed the barrier; a sink has
    /// pre-committed its output.
    Passed,
    /// The instance failed to take its part; the checkpoint cannot complete.
    Failed(String),
}

impl Checkpointing {
    /// Shared state for a run that restores `restore` (if any) and sends acks to `acks`.
    /// Checkpoint ids continue after `first_id - 1`.
    pub fn new(
        acks: crossbeam_channel::Sender<Ack>,
        mut restore: Option<Checkpoint>,
        last_id: u64,
    ) -> Checkpointing {
        let state: RestoredState = restore
            .iter_mut()
            .flat_map(|c| &mut c.operators)
            .map(|o| (o.name.clone(), std::mem::take(&mut o.instances)))
            .collect();
        Checkpointing {
            state: Mutex::new(Some(Arc::new(state))),
            restoring: AtomicUsize::new(0),
            restore_began: Mutex::new(None),
            restore_ns: AtomicU64::new(0),
            continuing: None,
            requested: AtomicU64::new(last_id),
            initial: last_id,
            base: AtomicU64::new(0),
            completed: Arc::new(AtomicU64::new(restore.as_ref().map_or(0, |c| c.id))),
            retained: AtomicU64::new(0),
            acks,
            restore,
        }
    }

    /// Lets the restored checkpoint `id` be the base of the run's first delta: it is in the
    /// run's checkpoint directory and was taken with the same cores, so every operator instance
    /// restores exactly the state its core held.
    pub fn continuing(mut self, id: Option<u64>) -> Checkpointing {
        self.continuing = id;
        self
    }

    /// The restored checkpoint a first delta may build on.
    pub(crate) fn continues(&self) -> Option<u64> {
        self.continuing
    }

    /// Asks sources to inject barriers up to checkpoint `id`. With a `base`, an operator
    /// instance whose previous snapshot was for `base` may copy only what changed since
    /// (an incremental checkpoint); every other instance copies its whole state.
    pub fn request(&self, id: u64, base: Option<u64>) {
        self.base.store(base.unwrap_or(0), Ordering::Release);
        self.requested.fetch_max(id, Ordering::Release);
    }

    /// The last checkpoint id before this run (sources send barriers for the later ones).
    pub(crate) fn initial(&self) -> u64 {
        self.initial
    }

    /// The checkpoint the newest requested one may build on.
    pub fn base(&self) -> Option<u64> {
        Some(self.base.load(Ordering::Acquire)).filter(|id| *id > 0)
    }

    /// The newest checkpoint requested.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Marks checkpoint `id` complete: sinks commit what they staged up to it.
    pub fn complete(&self, id: u64) {
        self.completed.fetch_max(id, Ordering::Release);
    }

    /// The newest completed checkpoint (or the restored one).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// The cell [`Checkpointing::completed`] reads, for a store that must keep every
    /// checkpoint from the completed one on (a spread pipeline's part store).
    pub fn completed_cell(&self) -> Arc<AtomicU64> {
        self.completed.clone()
    }

    /// Records that checkpoints older than `id` are deleted: sources may drop the input
    /// before `id`'s positions.
    pub fn retain_from(&self, id: u64) {
        self.retained.fetch_max(id, Ordering::Release);
    }

    /// The oldest checkpoint kept (0 before the first is written).
    pub fn retained(&self) -> u64 {
        self.retained.load(Ordering::Acquire)
    }

    /// The checkpoint the run restores, if any: its sources' positions and its operators'
    /// names and kinds (their state is in [`Checkpointing::restored_state`]).
    pub fn restore(&self) -> Option<&Checkpoint> {
        self.restore.as_ref()
    }

    /// The restored state of every operator by name, while cores are restoring.
    pub(crate) fn restored_state(&self) -> Option<Arc<RestoredState>> {
        self.state.lock().ok()?.clone()
    }

    /// `cores` are about to restore their parts.
    pub(crate) fn begin_restore(&self, cores: usize) {
        if let Ok(mut began) = self.restore_began.lock() {
            *began = Some(std::time::Instant::now());
        }
        self.restoring.store(cores, Ordering::Release);
    }

    /// How long the cores took to restore the checkpoint's state (from the deploy until the
    /// last core had its part), once they have; `None` without a restore.
    pub fn restore_duration(&self) -> Option<std::time::Duration> {
        self.restore.as_ref()?;
        match self.restore_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(std::time::Duration::from_nanos(ns)),
        }
    }

    /// One core has restored its part; after the last, the restored state is dropped (its
    /// memory-mapped files with it, so deleting the checkpoint frees their space).
    pub(crate) fn core_restored(&self) {
        if self.restoring.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Ok(mut state) = self.state.lock() {
                state.take();
            }
            if let Some(began) = self.restore_began.lock().ok().and_then(|b| *b) {
                let ns = began.elapsed().as_nanos().max(1) as u64;
                self.restore_ns.store(ns, Ordering::Release);
            }
        }
    }

    /// Sends an ack; a coordinator that has gone away is not an error of the data plane.
    pub(crate) fn ack(&self, ack: Ack) {
        let _ = self.acks.send(ack);
    }
}

/// The sender of `message`, for alignment.
fn sender_of(message: &Message) -> SenderId {
    match message {
        Message::Batch { sender, .. }
        | Message::Watermark { sender, .. }
        | Message::Idle { sender }
        | Message::End { sender }
        | Message::Barrier { sender, .. } => *sender,
    }
}

/// What a task's [`Inbox`] hands it next.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A batch, watermark, idle notice or end to handle.
    Message(Message),
    /// Every sender's barrier of checkpoint `id` (or its end) has arrived, and everything
    /// before them has been delivered: snapshot, ack and forward the barrier now.
    Aligned(u64),
    /// Every sender has gone.
    Closed,
}

/// Aligns barriers in front of a task's mailbox.
pub(crate) struct Inbox {
    mailbox: LocalReceiver<Message>,
    senders: usize,
    ended: Vec<SenderId>,
    aligning: Option<Alignment>,
    /// Messages from senders whose barrier arrived, held until alignment.
    held: VecDeque<Message>,
    /// Messages released by an alignment, delivered before the mailbox's.
    replay: VecDeque<Message>,
    /// An alignment completed and is yet to be reported.
    ready: Option<u64>,
    /// How long the last completed alignment took (first barrier to last), until taken.
    took: Option<std::time::Duration>,
}

struct Alignment {
    id: u64,
    arrived: Vec<SenderId>,
    /// When its first barrier arrived.
    began: std::time::Instant,
}

impl Inbox {
    /// An inbox over `mailbox`, fed by `senders` upstream instances.
    pub(crate) fn new(mailbox: LocalReceiver<Message>, senders: usize) -> Inbox {
        Inbox {
            mailbox,
            senders,
            ended: Vec::new(),
            aligning: None,
            held: VecDeque::new(),
            replay: VecDeque::new(),
            ready: None,
            took: None,
        }
    }

    /// Messages waiting in the mailbox now.
    pub(crate) fn queued(&self) -> usize {
        self.mailbox.len()
    }

    /// How long the alignment just reported ([`Delivery::Aligned`]) took, once.
    pub(crate) fn take_alignment(&mut self) -> Option<std::time::Duration> {
        self.took.take()
    }

    /// Whether every sender has ended.
    pub(crate) fn all_ended(&self) -> bool {
        self.ended.len() >= self.senders
    }

    /// The next thing to handle. Cancel-safe: nothing is lost if the future is dropped.
    pub(crate) async fn next(&mut self) -> Delivery {
        loop {
            if let Some(id) = self.ready.take() {
                return Delivery::Aligned(id);
            }
            let message = match self.replay.pop_front() {
                Some(message) => message,
                None => match self.mailbox.recv().await {
                    Some(message) => message,
                    None => return Delivery::Closed,
                },
            };
            let sender = sender_of(&message);
            if let Some(alignment) = &self.aligning {
                if alignment.arrived.contains(&sender) {
                    self.held.push_back(message);
                    continue;
                }
            }
            match message {
                Message::Barrier { sender, id } => self.on_barrier(sender, id),
                Message::End { sender } => {
                    self.ended.push(sender);
                    self.check_aligned();
                    return Delivery::Message(message);
                }
                other => return Delivery::Message(other),
            }
        }
    }

    fn on_barrier(&mut self, sender: SenderId, id: u64) {
        match &mut self.aligning {
            None => {
                self.aligning = Some(Alignment {
                    id,
                    arrived: vec![sender],
                    began: std::time::Instant::now(),
                })
            }
            Some(alignment) if alignment.id == id => alignment.arrived.push(sender),
            Some(alignment) if id > alignment.id => {
                // A sender skipped the checkpoint being aligned, which therefore cannot
                // complete: give it up and align the newer one.
                tracing::debug!(abandoned = alignment.id, id, "barrier overtaken");
                self.replay.extend(self.held.drain(..));
                self.aligning = Some(Alignment {
                    id,
                    arrived: vec![sender],
                    began: std::time::Instant::now(),
                });
            }
            // An older barrier than the one being aligned: that checkpoint was given up.
            Some(_) => {}
        }
        self.check_aligned();
    }

    fn check_aligned(&mut self) {
        let Some(alignment) = &self.aligning else {
            return;
        };
        let ended_elsewhere = self
            .ended
            .iter()
            .filter(|sender| !alignment.arrived.contains(sender))
            .count();
        if alignment.arrived.len() + ended_elsewhere >= self.senders {
            self.ready = Some(alignment.id);
            self.took = Some(alignment.began.elapsed());
            self.aligning = None;
            self.replay.extend(self.held.drain(..));
        }
    }
}
