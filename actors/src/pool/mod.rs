//! The core pool: one glommio executor per data core for the life of the process, each
//! serving typed commands (deploy a pipeline instance, pause, resume, cancel) from a
//! crossbeam queue and answering with typed [`Event`]s per pipeline.
//!
//! A pipeline is deployed onto pool cores `0..cores`: [`PoolHandle::deploy`] plans and wires
//! it on the calling thread and hands each core its instance; from then on the instance's
//! tasks run on the core beside those of other pipelines, and the batches between them never
//! pass through the pool. Checkpoints are triggered through the pipeline's shared
//! [`Checkpointing`](crate::Checkpointing) (sources read it between batches) and acked on its
//! crossbeam channel; counters are the pipeline's [`RunProbe`], read at any time.
//!
//! An idle core parks in the kernel; a command wakes it through the executor's eventfd.

mod core;
mod inbox;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, Placement};
use wire_core::frontend::plan::Plan;

use self::core::{Command, Done, Hosted};
use self::inbox::Outbox;
use crate::pipeline::{self, Deploy, Failure, Notice, PREEMPT_AFTER, SPIN_BEFORE_PARK};
use crate::probe::RunProbe;
use crate::Error;

/// How long [`Deployment::wait`] waits between looks whether a core has died.
const CORE_ALIVE_POLL: Duration = Duration::from_millis(100);

/// How to start the pool.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Data cores (executors).
    pub cores: usize,
    /// Pin each executor to its own CPU (when there are enough CPUs).
    pub pin: bool,
    /// Registered IO memory per core, sized once for the process (see
    /// [`io_memory_for`](crate::io_memory_for); WALs need [`WAL_IO_MEMORY_BYTES`](crate::WAL_IO_MEMORY_BYTES)).
    pub io_memory: usize,
}

/// A pipeline's id in the pool, unique for the pool's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId(pub u64);

impl std::fmt::Display for PipelineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pipeline-{}", self.0)
    }
}

/// What a core tells about a pipeline instance it hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The core.
    pub core: usize,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    fn new(pipeline: PipelineId, core: usize, kind: EventKind) -> Event {
        Event {
            pipeline,
            core,
            kind,
        }
    }
}

/// See [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The core has started its instance.
    Started,
    /// The instance's sources have stopped emitting.
    Paused,
    /// The instance's sources emit again.
    Resumed,
    /// The pipeline failed (the first error, as text); `Finished` follows.
    Failed(String),
    /// The core's instance has ended: every task drained and flushed.
    Finished,
}

/// One core as the handle sees it.
struct CoreLink {
    commands: Outbox<Command>,
    /// False once the core's thread has ended (or unwound).
    alive: Arc<AtomicBool>,
}

/// Sends commands to the pool's cores; cheap to clone and to move between threads.
#[derive(Clone)]
pub struct PoolHandle {
    cores: Arc<Vec<CoreLink>>,
    next_id: Arc<AtomicU64>,
}

/// The pool: its executors run until it is shut down (or dropped).
pub struct CorePool {
    handle: PoolHandle,
    threads: Vec<ExecutorJoinHandle<()>>,
}

/// Marks a core dead when its executor's future ends or unwinds.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// An executor configured as each of a pool's `cores` cores is (io memory capped at
/// `io_memory`, spinning before it parks, preempting long tasks): for benches that drive a
/// core's code paths, such as the exchange, outside a pool.
pub fn core_executor(
    placement: Placement,
    cores: usize,
    io_memory: usize,
) -> Result<glommio::LocalExecutorBuilder, Error> {
    Ok(
        wire_storage::io::executor_builder_capped(placement, cores, io_memory)
            .map_err(Error::Executor)?
            .spin_before_park(SPIN_BEFORE_PARK)
            .preempt_timer(PREEMPT_AFTER),
    )
}

impl CorePool {
    /// Starts one executor per core; each parks until it gets a command.
    pub fn start(options: PoolOptions) -> Result<CorePool, Error> {
        let cores = options.cores.max(1);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut links = Vec::with_capacity(cores);
        let mut threads = Vec::with_capacity(cores);
        for core in 0..cores {
            let placement = if options.pin && cores <= cpus {
                Placement::Fixed(core)
            } else {
                Placement::Unbound
            };
            let builder = core_executor(placement, cores, options.io_memory)?
                .name(&format!("wire-core-{core}"));
            let (commands, inbox) = inbox::queue();
            let alive = Arc::new(AtomicBool::new(true));
            let guard = Alive(alive.clone());
            let spawned = builder.spawn(move || async move {
                let _alive = guard;
                core::serve(core, inbox).await
            });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // The cores started so far end when their queues close.
                    drop(links);
                    for thread in threads {
                        let _ = thread.join();
                    }
                    return Err(Error::Executor(std::io::Error::other(err.to_string())));
                }
            }
            links.push(CoreLink { commands, alive });
        }
        let handle = PoolHandle {
            cores: Arc::new(links),
            next_id: Arc::new(AtomicU64::new(1)),
        };
        Ok(CorePool { handle, threads })
    }

    /// A handle to send the pool commands.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// Cancels every pipeline, waits for them to drain and flush, and ends the executors.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for CorePool {
    fn drop(&mut self) {
        for core in self.handle.cores.iter() {
            let _ = core.commands.send(Command::Shutdown);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl PoolHandle {
    /// Data cores in the pool.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Deploys `plan` onto pool cores `0..deploy.cores` and returns at once; the pipeline
    /// runs beside any others until its sources end or it is cancelled.
    pub fn deploy(&self, plan: Plan, deploy: Deploy) -> Result<Deployment, Error> {
        let cores = deploy.cores.max(1);
        if cores > self.cores() {
            return Err(Error::Pool(format!(
                "pipeline `{}` asks for {cores} cores and the pool has {}",
                plan.name,
                self.cores()
            )));
        }
        if let Some(dead) = (0..cores).find(|c| !self.cores[*c].alive.load(Ordering::Acquire)) {
            return Err(Error::Pool(format!("core {dead} has ended")));
        }
        let name = plan.name.clone();
        let prepared = pipeline::prepare(plan, &deploy)?;
        let id = PipelineId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (events_tx, events) = crossbeam_channel::unbounded();
        let (wake, done) = crossbeam_channel::unbounded();
        let finished = Arc::new(AtomicUsize::new(0));
        for (core, instance) in prepared.instances.into_iter().enumerate() {
            let hosted = Hosted {
                id,
                instance,
                events: events_tx.clone(),
                done: Done {
                    finished: finished.clone(),
                    wake: wake.clone(),
                },
            };
            if self.cores[core]
                .commands
                .send(Command::Deploy(Box::new(hosted)))
                .is_err()
            {
                // The instances already sent cannot finish without this one: end them.
                prepared.stop.store(true, Ordering::Relaxed);
                prepared
                    .failure
                    .record(Error::Pool(format!("core {core} has ended")));
            }
        }
        Ok(Deployment {
            id,
            name,
            pool: self.clone(),
            cores,
            participants: prepared.participants,
            probe: prepared.probe,
            failure: prepared.failure,
            notices: prepared.notices,
            events,
            done,
            finished,
            started: Instant::now(),
        })
    }

    /// Pauses pipeline `id` on every core that hosts it.
    pub fn pause(&self, id: PipelineId) {
        self.broadcast(|| Command::Pause(id));
    }

    /// Resumes pipeline `id` on every core that hosts it.
    pub fn resume(&self, id: PipelineId) {
        self.broadcast(|| Command::Resume(id));
    }

    /// Ends pipeline `id` gracefully: sources stop, everything drains and flushes.
    pub fn cancel(&self, id: PipelineId) {
        self.broadcast(|| Command::Cancel(id));
    }

    fn broadcast(&self, command: impl Fn() -> Command) {
        for core in self.cores.iter() {
            let _ = core.commands.send(command());
        }
    }
}

/// A pipeline deployed on the pool.
pub struct Deployment {
    id: PipelineId,
    name: String,
    pool: PoolHandle,
    cores: usize,
    participants: usize,
    probe: Arc<RunProbe>,
    failure: Arc<Failure>,
    notices: crossbeam_channel::Receiver<Notice>,
    events: crossbeam_channel::Receiver<Event>,
    done: crossbeam_channel::Receiver<()>,
    finished: Arc<AtomicUsize>,
    started: Instant,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// Counters at the end.
    pub probe: Arc<RunProbe>,
    /// Wall time from start to the last core finishing.
    pub wall: Duration,
    /// Data cores used.
    pub cores: usize,
    /// The first error, if the run failed.
    pub error: Option<Error>,
    /// How many tasks failed after the first (each logged at `info`).
    pub further_errors: u64,
}

impl Deployment {
    /// The pipeline's id in the pool.
    pub fn id(&self) -> PipelineId {
        self.id
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data cores the pipeline runs on.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Task instances that ack every checkpoint (every task on every core).
    pub fn checkpoint_participants(&self) -> usize {
        self.participants
    }

    /// Live counters.
    pub fn probe(&self) -> &Arc<RunProbe> {
        &self.probe
    }

    /// Notices (like bound listen addresses) the cores have sent so far.
    pub fn notices(&self) -> &crossbeam_channel::Receiver<Notice> {
        &self.notices
    }

    /// What the cores tell about this pipeline (started, paused, failed, finished...).
    pub fn events(&self) -> &crossbeam_channel::Receiver<Event> {
        &self.events
    }

    /// Pauses the pipeline: its sources stop emitting (an ingest source stops acking, so
    /// producers run out of credits); what is in flight drains; checkpoints go on.
    pub fn pause(&self) {
        self.pool.pause(self.id);
    }

    /// Resumes a paused pipeline where its sources stopped.
    pub fn resume(&self) {
        self.pool.resume(self.id);
    }

    /// Ends the pipeline gracefully (as Ctrl-C does): sources stop, everything drains and
    /// flushes, then the cores report it finished.
    pub fn cancel(&self) {
        self.pool.cancel(self.id);
    }

    /// Ends the pipeline without draining: the run fails with `why`, and every task waiting
    /// on a peer (a credit, a write, a read) gives up, so the run ends even if a peer never
    /// answers again. For a run whose output is discarded anyway (a superseded version).
    pub fn abort(&self, why: String) {
        self.failure.record(Error::Aborted(why));
        self.cancel();
    }

    /// Whether every core has finished its instance.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire) >= self.cores
    }

    /// Waits for every core's instance to end and reports.
    pub fn wait(self) -> RunReport {
        let mut core_died = false;
        while !self.is_finished() {
            if self.done.recv_timeout(CORE_ALIVE_POLL).is_err() && !self.is_finished() {
                let dead =
                    (0..self.cores).any(|c| !self.pool.cores[c].alive.load(Ordering::Acquire));
                if dead {
                    core_died = true;
                    break;
                }
            }
        }
        let mut error = self.failure.take();
        if core_died && error.is_none() {
            error = Some(Error::Panicked);
        }
        RunReport {
            probe: self.probe,
            wall: self.started.elapsed(),
            cores: self.cores,
            error,
            further_errors: self.failure.further(),
        }
    }
}
