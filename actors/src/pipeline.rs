//! Deploying a pipeline onto the pool's cores: every task instantiated on every core it
//! runs on, queues wired between them, counters and the first error shared with the caller.
//!
//! Cross-core queues are created here on the main thread (one shared channel per producing
//! task, consuming task and core pair) and handed to the cores, which connect both ends. A
//! consumer's remote queues are drained into its local mailbox by a small forwarder task, so
//! each task reads one mailbox.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use wire_core::frontend::plan::{Input, Operator, Plan};
use wire_core::frontend::spec::{SinkKind, SourceKind};

use wire_core::state::snapshot::Section;
use wire_core::time::watermark::SenderId;
use wire_storage::checkpoint::InstanceState;

use crate::chain::Chain;
use crate::checkpoint::{Checkpointing, Inbox};
use crate::graph::{Edge, Head, PhysicalGraph, Routing};
use crate::message::Message;
use crate::outlet::{Outlet, Route, Target};
use crate::probe::{Role, RunProbe};
use crate::task::OperatorTask;
use crate::{operator, sink, source, Error};

/// Batches a task's mailbox holds before senders wait.
pub const MAILBOX_BATCHES: usize = 8;
/// Batches a queue between two cores of one node holds before the sending core waits. Few:
/// a batch the consumer takes soon after it was written is still in cache, and every batch
/// in a queue is memory. q5 on two cores, 8 instead of 32: peak RSS 66–99 → 50–52 MiB,
/// 6.6–8.3M → 9.2–9.4M events/s, the keyed count at par; 4 cost the count 10% more CPU.
pub const CORE_QUEUE_BATCHES: usize = 8;
/// Batches of credit a stream from another node gets (its round trip needs more in flight
/// than a queue between cores).
pub const EXCHANGE_BATCHES: usize = 32;
/// How long an idle core spins before parking. Waking a parked core costs an eventfd write
/// and, on a virtual machine, a trip through the hypervisor; cores that exchange batches
/// would otherwise park and wake for every batch.
pub(crate) const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);
/// How long a task runs before `yield_if_needed` lets the others on its core run (glommio's
/// default is 100 ms). A source that keeps its core for long starves the tasks that drain
/// cross-core queues, and the other cores wait on those queues.
pub(crate) const PREEMPT_AFTER: Duration = Duration::from_micros(250);
/// See [`heartbeat`]. Every beat wakes an idle core, which then spins for
/// [`SPIN_BEFORE_PARK`] before parking again: at 1 ms the beats alone kept an idle node at a
/// fifth of a CPU per core, at 50 ms they cost well under 1%.
const HEARTBEAT: Duration = Duration::from_millis(50);
/// Registered IO memory per core when the pipeline writes a WAL: room for the WAL's staging
/// buffers of one busy partition.
pub const WAL_IO_MEMORY_BYTES: usize = 8 << 20;

/// Something the caller should tell the user while the pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An ingest source is accepting producers on this address.
    Listening {
        /// The source's name.
        source: String,
        /// The bound address.
        addr: std::net::SocketAddr,
    },
}

/// The first error of a run, which [`RunReport::error`] hands to the caller to report once;
/// later ones (often the same cause seen by another core) are counted and logged at `info`.
#[derive(Debug, Default)]
pub struct Failure {
    first: Mutex<Option<Error>>,
    failed: AtomicBool,
    further: AtomicU64,
}

impl Failure {
    /// Tasks that failed after the first.
    pub(crate) fn further(&self) -> u64 {
        self.further.load(Ordering::Relaxed)
    }
}

impl Failure {
    /// Records `error` (keeping the first) and asks every source to stop.
    pub fn record(&self, error: Error) {
        {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                tracing::debug!(error = %error, "pipeline task failed; the run stops");
                *first = Some(error);
            } else {
                self.further.fetch_add(1, Ordering::Relaxed);
                tracing::info!(error = %error, "another pipeline task failed after the first failure");
            }
        }
        // After the error is stored: whoever sees the flag can read why (`message`).
        self.failed.store(true, Ordering::Release);
    }

    /// Whether any task failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The first error's message, if a task failed (for telling producers why the run ends).
    pub fn message(&self) -> Option<String> {
        if !self.failed() {
            return None;
        }
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.as_ref().map(|error| error.to_string())
    }

    pub(crate) fn take(&self) -> Option<Error> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What every task on a core shares.
pub(crate) struct CoreCx {
    pub(crate) core: usize,
    pub(crate) cores: usize,
    pub(crate) plan: Arc<Plan>,
    pub(crate) probe: Arc<RunProbe>,
    /// Set to end the pipeline gracefully (cancel): sources stop, everything drains and
    /// flushes.
    pub(crate) stop: Arc<AtomicBool>,
    /// Set while this core's instance is paused: its sources emit nothing.
    pub(crate) paused: Arc<AtomicBool>,
    pub(crate) failure: Arc<Failure>,
    pub(crate) data_dir: PathBuf,
    pub(crate) notices: crossbeam_channel::Sender<Notice>,
    /// The listening sockets of ingest sources, by source index, bound once per process.
    pub(crate) ports: Arc<Vec<Option<Arc<source::ingest::IngestPort>>>>,
    /// The static tables of `lookup` operators, read-only.
    pub(crate) lookups: Arc<crate::lookup::LookupTables>,
    /// Checkpoints, when the run takes them.
    pub(crate) checkpoints: Option<Arc<Checkpointing>>,
    /// This node's exchange hub, when the pipeline has slots on other nodes.
    pub(crate) hub: Option<Arc<crate::exchange::ExchangeHub>>,
    /// The placement's epoch, when the pipeline has slots on other nodes: file sinks fence
    /// their staged parts with it.
    pub(crate) fence: Option<u64>,
    /// The watermarks of the node's source instances, for watermark alignment.
    pub(crate) clocks: Arc<source::align::SourceClocks>,
}

impl CoreCx {
    /// Whether sources should stop producing.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.failure.failed()
    }

    /// Whether this core's sources should hold back (paused); checked between batches.
    pub(crate) fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Probe index of source `i`, operator `i` or sink `i`.
    pub(crate) fn node(&self, head: Head) -> usize {
        match head {
            Head::Source(i) => i,
            Head::Operator(i) => self.plan.sources.len() + i,
            Head::Sink(i) => self.plan.sources.len() + self.plan.operators.len() + i,
        }
    }
}

/// What a pipeline instance needs to deploy: the pool's cores it runs on, where its state
/// lives, and its checkpoints.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// Data cores the pipeline runs on: pool cores `0..cores`.
    pub cores: usize,
    /// Where WALs and other state live.
    pub data_dir: PathBuf,
    /// Take part in checkpoints (and restore one), or `None` to run without.
    pub checkpoints: Option<Arc<Checkpointing>>,
    /// The pipeline's slots over several nodes, or `None` when it runs on this node alone
    /// (its slots are then the `cores` here). With a placement, `cores` is the number of
    /// local slots.
    pub placement: Option<crate::exchange::Placement>,
    /// Who may produce to the pipeline's ingest sources when security is on; `None`: every
    /// producer (plain `wire run`, or a node without TLS).
    pub ingest_auth: Option<Arc<dyn crate::IngestAuth>>,
    /// TLS on the pipeline's ingest ports when security is on; `None`: plaintext.
    pub ingest_tls: Option<Arc<crate::IngestTls>>,
    /// This node's id (0 for `wire run`), the high bits of the producer ids its ingest
    /// sources issue (at most [`crate::NODE_ID_MAX`]).
    pub node_id: u64,
}

/// One core's part of a deployed pipeline, built on the deploying thread and moved to the core.
pub(crate) struct CoreInstance {
    pub(crate) cx: CoreCx,
    pub(crate) graph: Arc<PhysicalGraph>,
    wiring: CoreWiring,
}

impl CoreInstance {
    /// Runs every task of this core's part until all have ended.
    pub(crate) async fn run(self) {
        core_main(self.cx, self.graph, self.wiring).await;
    }
}

/// A pipeline cut into per-core instances, and what the caller watches it by.
pub(crate) struct Prepared {
    pub(crate) instances: Vec<CoreInstance>,
    pub(crate) probe: Arc<RunProbe>,
    pub(crate) failure: Arc<Failure>,
    pub(crate) notices: crossbeam_channel::Receiver<Notice>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) participants: usize,
}

/// Plans `plan` onto `deploy.cores` cores: optimises it, wires the cross-core queues, loads
/// lookup tables, binds ingest ports and checks a restore; no core runs anything yet.
/// The slots this deployment runs, in pool-core order: its placement's local slots, or
/// `0..cores` when the pipeline runs on this node alone.
fn local_slots(deploy: &Deploy) -> Result<Vec<usize>, Error> {
    let Some(placement) = &deploy.placement else {
        return Ok((0..deploy.cores.max(1)).collect());
    };
    placement.check()?;
    if placement.local.len() != deploy.cores.max(1) {
        return Err(Error::Pool(format!(
            "placement of `{}` runs {} slots here on {} cores",
            placement.pipeline,
            placement.local.len(),
            deploy.cores
        )));
    }
    Ok(placement.local.clone())
}

pub(crate) fn prepare(plan: Plan, deploy: &Deploy) -> Result<Prepared, Error> {
    let local = local_slots(deploy)?;
    // Keys and partitions are dealt to slots: the cores of every node the pipeline runs on.
    let cores = deploy.placement.as_ref().map_or(local.len(), |p| p.slots);
    // Checkpointed runs get the same physical plan at any core count, so their state maps
    // onto the same operators when they restart with another count.
    let shape = deploy.checkpoints.as_ref().map_or(cores, |_| cores.max(2));
    let plan = crate::optimize::optimize(plan, shape);
    let graph = Arc::new(PhysicalGraph::build(&plan));
    let probe = RunProbe::new(probe_nodes(&plan), cores);
    let plan = Arc::new(plan);
    let failure = Arc::new(Failure::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (notice_tx, notices) = crossbeam_channel::unbounded();
    let lookups = Arc::new(crate::lookup::load_all(&plan)?);
    // Bound here, once, without SO_REUSEPORT: a port another process holds fails the run.
    // Only this node's slots scan their ingest WALs here, so idempotent Hellos wait for
    // `local.len()` partitions, not for the slots of every node of a spread placement.
    let ports = Arc::new(source::ingest::bind_ports(
        &plan,
        &deploy.data_dir,
        local.len(),
        deploy.node_id,
        deploy.ingest_auth.as_ref(),
        deploy.ingest_tls.as_ref(),
    )?);
    if let Some(checkpoints) = &deploy.checkpoints {
        check_checkpointable(&plan)?;
        if let Some(restore) = checkpoints.restore() {
            check_restorable(&plan, restore, cores)?;
        }
        // Only this node's slots restore here.
        checkpoints.begin_restore(local.len());
    }
    let wiring = exchange_wiring(&graph, cores, &local, deploy.placement.as_ref());
    let clocks = Arc::new(source::align::SourceClocks::new(&plan, cores, &local));
    let instances = wiring
        .into_iter()
        .zip(local.iter().copied())
        .map(|(wiring, core)| CoreInstance {
            cx: CoreCx {
                core,
                cores,
                plan: plan.clone(),
                probe: probe.clone(),
                stop: stop.clone(),
                paused: Arc::new(AtomicBool::new(false)),
                failure: failure.clone(),
                data_dir: deploy.data_dir.clone(),
                notices: notice_tx.clone(),
                ports: ports.clone(),
                lookups: lookups.clone(),
                checkpoints: deploy.checkpoints.clone(),
                hub: deploy.placement.as_ref().map(|p| p.hub.clone()),
                fence: deploy.placement.as_ref().map(|p| p.epoch),
                clocks: clocks.clone(),
            },
            graph: graph.clone(),
            wiring,
        })
        .collect();
    Ok(Prepared {
        instances,
        probe,
        failure,
        notices,
        stop,
        participants: graph.tasks.len() * local.len(),
    })
}

/// Registered IO memory each core needs for `plan`: room for WAL staging buffers when it has
/// an ingest source, else the minimum.
pub fn io_memory_for(plan: &Plan) -> usize {
    let has_wal = plan
        .sources
        .iter()
        .any(|s| matches!(s.kind, SourceKind::Ingest(_)));
    if has_wal {
        WAL_IO_MEMORY_BYTES
    } else {
        wire_storage::io::IO_MEMORY_BYTES_MIN
    }
}

fn probe_nodes(plan: &Plan) -> Vec<(String, Role, String)> {
    let sources = plan.sources.iter().map(|s| {
        let kind = match &s.kind {
            SourceKind::Nexmark(_) => "nexmark",
            SourceKind::File(_) => "file",
            SourceKind::Ingest(_) => "ingest",
            SourceKind::Kafka(_) => "kafka",
            SourceKind::Mongodb(_) => "mongodb",
            _ => "source",
        };
        (s.name.clone(), Role::Source, kind.to_string())
    });
    let operators = plan.operators.iter().map(|o| {
        let kind = match &o.op {
            Operator::Filter(_) => "filter",
            Operator::Project(_) => "project",
            Operator::KeyBy(_) => "key_by",
            Operator::Union => "union",
            Operator::Aggregate(plan) => match &plan.window {
                Some(w) => match w.kind {
                    wire_core::time::window::WindowKind::Tumbling { .. } => "tumbling window",
                    wire_core::time::window::WindowKind::Hop { .. } => "hop window",
                    wire_core::time::window::WindowKind::Cumulate { .. } => "cumulate window",
                    wire_core::time::window::WindowKind::Session { .. } => "session window",
                },
                None => "aggregate",
            },
            Operator::Top(_) => "top",
            Operator::Join(plan) => match plan.kind {
                wire_core::frontend::plan::JoinKind::Regular { .. } => "join",
                wire_core::frontend::plan::JoinKind::Interval { .. } => "interval join",
                wire_core::frontend::plan::JoinKind::Window { .. } => "window join",
            },
            Operator::Late => "late rows",
            Operator::Lookup(_) => "lookup join",
            Operator::Process(plan) => plan.function.as_str(),
            _ => "operator",
        };
        (o.name.clone(), Role::Operator, kind.to_string())
    });
    let sinks = plan.sinks.iter().map(|s| {
        let kind = match &s.kind {
            SinkKind::Blackhole => "blackhole",
            SinkKind::Stdout { .. } => "stdout",
            SinkKind::File(_) => "file",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::Postgres(_) => "postgres",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::Mongodb(_) => "mongodb",
            _ => "sink",
        };
        (s.name.clone(), Role::Sink, kind.to_string())
    });
    sources.chain(operators).chain(sinks).collect()
}

/// (producing task, edge number over its outputs then side outputs, destination core).
type WireKey = (usize, usize, usize);

/// The cross-core queue ends each core owns, and its streams to and from other nodes.
#[derive(Default)]
struct CoreWiring {
    /// Sending ends by producing task, edge and destination core.
    senders: HashMap<WireKey, SharedSender<Message>>,
    /// (consuming task, receiving end).
    receivers: Vec<(usize, SharedReceiver<Message>)>,
    /// Streams to slots on other nodes, by producing task, edge and destination slot.
    net_out: HashMap<WireKey, (std::net::SocketAddr, wire_net::exchange::StreamKey)>,
    /// Streams from slots on other nodes: (consuming task, its input port, the stream).
    net_in: Vec<(usize, u8, wire_net::exchange::StreamKey)>,
}

/// Wires every exchange edge between the slots in `local` (pool cores here, in that order)
/// and, with a placement, to and from the slots on other nodes.
fn exchange_wiring(
    graph: &PhysicalGraph,
    slots: usize,
    local: &[usize],
    placement: Option<&crate::exchange::Placement>,
) -> Vec<CoreWiring> {
    let mut wiring: Vec<CoreWiring> = local.iter().map(|_| CoreWiring::default()).collect();
    let here = |slot: usize| local.iter().position(|s| *s == slot);
    for (task, spec) in graph.tasks.iter().enumerate() {
        for (edge_no, edge) in spec.outputs.iter().chain(&spec.side_outputs).enumerate() {
            if edge.routing == Routing::Forward {
                continue;
            }
            for from in 0..slots {
                for to in (0..slots).filter(|to| *to != from) {
                    match (here(from), here(to), placement) {
                        (Some(f), Some(t), _) => {
                            let (tx, rx) = shared_channel::new_bounded(CORE_QUEUE_BATCHES);
                            wiring[f].senders.insert((task, edge_no, to), tx);
                            wiring[t].receivers.push((edge.task, rx));
                        }
                        (Some(f), None, Some(p)) => {
                            let stream = p.stream(task, edge_no, from, to);
                            wiring[f]
                                .net_out
                                .insert((task, edge_no, to), (p.peers[to], stream));
                        }
                        (None, Some(t), Some(p)) => {
                            let stream = p.stream(task, edge_no, from, to);
                            wiring[t].net_in.push((edge.task, edge.port, stream));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    wiring
}

type Mailbox = (Rc<LocalSender<Message>>, LocalReceiver<Message>);

async fn core_main(cx: CoreCx, graph: Arc<PhysicalGraph>, mut wiring: CoreWiring) {
    let cx = Rc::new(cx);
    let mut mailboxes: Vec<Option<Mailbox>> = graph
        .tasks
        .iter()
        .map(|task| match task.head {
            Head::Source(_) => None,
            _ => {
                let (tx, rx) = local_channel::new_bounded(MAILBOX_BATCHES);
                Some((Rc::new(tx), rx))
            }
        })
        .collect();
    let sender_of = |mailboxes: &[Option<Mailbox>], task: usize| -> Rc<LocalSender<Message>> {
        mailboxes[task]
            .as_ref()
            .map(|(tx, _)| tx.clone())
            .expect("consumers have mailboxes")
    };
    // Receivers connect first (in their own tasks), so no core waits on a peer's connect.
    let mut tasks = spawn_receivers(&cx, &mut wiring, |task| sender_of(&mailboxes, task));
    for (index, task) in graph.tasks.iter().enumerate() {
        let edges: Vec<(usize, Edge)> = task
            .outputs
            .iter()
            .chain(&task.side_outputs)
            .copied()
            .enumerate()
            .collect();
        let mut targets = Vec::with_capacity(edges.len());
        for (edge_no, edge) in &edges {
            targets.push(target(&cx, &mailboxes, &mut wiring, index, *edge_no, *edge).await);
        }
        let side_targets = targets.split_off(task.outputs.len());
        let tail = match (task.head, task.chain.last()) {
            (_, Some(op)) => cx.node(Head::Operator(*op)),
            (head, None) => cx.node(head),
        };
        let sender = SenderId::new(index, cx.core);
        let outlet = Outlet::new(targets, cx.probe.clone(), tail, cx.core, sender);
        let stateful = match task.head {
            Head::Operator(op) => operator::build(&cx.plan, op).map(|mut s| {
                let snapshotted = match restore_operator(&cx, op, s.as_mut()) {
                    Ok(continues) => continues,
                    Err(err) => {
                        cx.failure.record(err);
                        None
                    }
                };
                if cx.checkpoints.is_some() {
                    s.track_changes();
                }
                (s, cx.node(task.head), snapshotted)
            }),
            _ => None,
        };
        // A stateful head is not a chain step: the chain runs on its results.
        let steps = if stateful.is_some() {
            &task.chain[1..]
        } else {
            &task.chain[..]
        };
        let chain = Chain::new(
            &cx.plan,
            steps,
            cx.probe.clone(),
            cx.plan.sources.len(),
            cx.core,
            &cx.lookups,
        );
        let side = match task.head {
            Head::Operator(op) if !task.side_outputs.is_empty() => {
                let late = cx.plan.operators.iter().position(|o| {
                    matches!(o.op, Operator::Late) && o.inputs[0] == Input::Operator(op)
                });
                late.map(|late| {
                    let node = cx.node(Head::Operator(late));
                    let outlet = Outlet::new(side_targets, cx.probe.clone(), node, cx.core, sender);
                    (outlet, node)
                })
            }
            _ => None,
        };
        let senders = graph.senders(index, cx.cores);
        let mailbox = mailboxes[index].take().map(|(_, rx)| rx);
        let failure = cx.failure.clone();
        let cx = cx.clone();
        let head = task.head;
        let run = async move {
            match (head, mailbox) {
                (Head::Source(i), _) => source::run(cx, i, chain, outlet).await,
                (Head::Operator(_), Some(mailbox)) => {
                    let snapshotted = stateful.as_ref().and_then(|(_, _, at)| *at);
                    let task = OperatorTask {
                        cx,
                        task: index,
                        inbox: Inbox::new(mailbox, senders),
                        senders,
                        head: stateful.map(|(head, node, _)| (head, node)),
                        chain,
                        outlet,
                        side,
                        snapshotted,
                    };
                    task.run().await
                }
                (Head::Sink(i), Some(rx)) => sink::run(cx, i, index, Inbox::new(rx, senders)).await,
                _ => unreachable!("mailboxes exist for every non-source task"),
            }
        };
        tasks.push(glommio::spawn_local(guarded(failure, run)));
    }
    drop(mailboxes);
    if let Some(checkpoints) = &cx.checkpoints {
        checkpoints.core_restored();
    }
    let done = Rc::new(std::cell::Cell::new(false));
    glommio::spawn_local(heartbeat(done.clone())).detach();
    for task in tasks {
        task.await;
    }
    done.set(true);
}

/// Refuses checkpoints of a pipeline with an operator whose state cannot be checkpointed.
fn check_checkpointable(plan: &Plan) -> Result<(), Error> {
    for (index, operator) in plan.operators.iter().enumerate() {
        if let Err(reason) = operator::checkpointable(plan, index) {
            return Err(Error::Restore {
                checkpoint: 0,
                reason: format!(
                    "checkpoints are not available for this pipeline: operator `{}`: {reason}",
                    operator.name
                ),
            });
        }
    }
    Ok(())
}

/// Checks that every operator state of `restore` has a stateful operator of the same name
/// and kind in `plan`, and that ingest sources keep their core count (their WALs are per
/// core).
fn check_restorable(
    plan: &Plan,
    restore: &wire_storage::checkpoint::Checkpoint,
    cores: usize,
) -> Result<(), Error> {
    let fail = |reason: String| Error::Restore {
        checkpoint: restore.id,
        reason,
    };
    if restore.max_parallelism != plan.settings.max_parallelism {
        return Err(fail(format!(
            "it has {} key groups, the pipeline {} (max_parallelism must stay the same)",
            restore.max_parallelism, plan.settings.max_parallelism
        )));
    }
    let kinds = probe_nodes(plan);
    for state in &restore.operators {
        let found = plan
            .operators
            .iter()
            .position(|o| o.name == state.name && o.op.is_stateful());
        let Some(index) = found else {
            return Err(fail(format!(
                "it holds state of operator `{}` ({}), which this pipeline does not have: \
                 keep the operator's name, or start without the checkpoint",
                state.name, state.kind
            )));
        };
        let kind = &kinds[plan.sources.len() + index].2;
        if *kind != state.kind {
            return Err(fail(format!(
                "operator `{}` was a {} and is now a {kind}",
                state.name, state.kind
            )));
        }
    }
    for source in &plan.sources {
        let saved = restore.sources.iter().find(|s| s.name == source.name);
        if let (Some(saved), SourceKind::Ingest(_)) = (saved, &source.kind) {
            if saved.partitions as usize != cores {
                return Err(fail(format!(
                    "ingest source `{}` ran on {} cores and keeps one WAL per core: \
                     restart with --cores {}",
                    source.name, saved.partitions, saved.partitions
                )));
            }
        }
    }
    Ok(())
}

/// Restores the key groups this core owns into operator `op`'s instance. Returns the
/// restored checkpoint if the instance's changes from now on are a delta on it (it restored
/// exactly its core's old state; see [`Checkpointing::continuing`]).
fn restore_operator(
    cx: &CoreCx,
    op: usize,
    operator: &mut dyn operator::Stateful,
) -> Result<Option<u64>, Error> {
    let Some(checkpoints) = cx.checkpoints.as_ref() else {
        return Ok(None);
    };
    let (Some(restore), Some(saved)) = (checkpoints.restore(), checkpoints.restored_state()) else {
        return Ok(None);
    };
    let name = &cx.plan.operators[op].name;
    let Some(instances) = saved.get(name) else {
        return Ok(None);
    };
    let max_parallelism = cx.plan.settings.max_parallelism;
    // A per-core operator (a local top) keeps what its core's rows brought, whatever their
    // key group: its instances are dealt out to the new cores whole.
    let per_core = matches!(&cx.plan.operators[op].op, Operator::Top(top) if top.per_core);
    let started = std::time::Instant::now();
    let mine = |instance: &InstanceState, section: &Section| {
        if per_core {
            instance.core % cx.cores == cx.core
        } else {
            wire_core::record::key::key_group_owner(section.key_group, max_parallelism, cx.cores)
                == cx.core
        }
    };
    let sections = || {
        instances
            .iter()
            .flat_map(|i| i.sections.iter().map(move |s| (i, s)))
            .filter(|(i, s)| mine(i, s))
    };
    operator.restore_size(sections().map(|(_, s)| s.bytes.len()).sum());
    let mut bytes = 0;
    // A core's whole state comes first, then the changes of each later checkpoint.
    for (_, section) in sections() {
        if cx.failure.failed() {
            // Aborted (a newer version replaces the run) or failed elsewhere: the state is
            // discarded with the run, which ends without restoring the rest.
            tracing::info!(operator = %name, core = cx.core, bytes, "restore stopped: the run ended");
            return Ok(None);
        }
        operator.restore(section).map_err(|err| Error::Restore {
            checkpoint: restore.id,
            reason: format!("operator `{name}`, key group {}: {err}", section.key_group),
        })?;
        bytes += section.bytes.len();
    }
    tracing::info!(
        operator = %name,
        core = cx.core,
        groups = operator.groups(),
        bytes,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "state restored"
    );
    let continues = checkpoints
        .continues()
        .filter(|_| instances.iter().any(|i| i.core == cx.core));
    Ok(continues)
}

/// Keeps a timer pending on the core while it runs. glommio 0.9 can park an executor that
/// still has runnable tasks (when the preempt timer has already expired as it starts running
/// task queues, which a descheduled thread makes likely with a short preempt timer); parked
/// with nothing else pending it would never wake. The timer bounds such a stall to
/// `HEARTBEAT`.
async fn heartbeat(done: Rc<std::cell::Cell<bool>>) {
    while !done.get() {
        glommio::timer::sleep(HEARTBEAT).await;
    }
}

/// Runs a task, turning its panic into the pipeline's failure: a panicking task must not take
/// its core, and the other pipelines on it, down with it.
async fn guarded(failure: Arc<Failure>, task: impl std::future::Future<Output = ()>) {
    use futures_lite::FutureExt;
    if std::panic::AssertUnwindSafe(task)
        .catch_unwind()
        .await
        .is_err()
    {
        failure.record(Error::Panicked);
    }
}

/// Starts the tasks that move what other cores and other nodes send into this core's
/// mailboxes (`mailbox(task)`).
fn spawn_receivers(
    cx: &CoreCx,
    wiring: &mut CoreWiring,
    mailbox: impl Fn(usize) -> Rc<LocalSender<Message>>,
) -> Vec<glommio::Task<()>> {
    let mut tasks = Vec::new();
    for (consumer, receiver) in wiring.receivers.drain(..) {
        tasks.push(glommio::spawn_local(forward(receiver, mailbox(consumer))));
    }
    if let Some(hub) = &cx.hub {
        for (consumer, port, stream) in wiring.net_in.drain(..) {
            let failure = cx.failure.clone();
            let receive =
                crate::exchange::receive(hub.clone(), stream, port, failure, mailbox(consumer));
            tasks.push(glommio::spawn_local(receive));
        }
    }
    tasks
}

/// Moves messages from a cross-core queue into the local mailbox until the sender's `End`.
async fn forward(receiver: SharedReceiver<Message>, mailbox: Rc<LocalSender<Message>>) {
    let receiver = receiver.connect().await;
    while let Some(message) = receiver.recv().await {
        let end = matches!(message, Message::End { .. });
        if mailbox.send(message).await.is_err() || end {
            break;
        }
    }
}

/// The target of one output edge of task `task` on this core.
async fn target(
    cx: &CoreCx,
    mailboxes: &[Option<Mailbox>],
    wiring: &mut CoreWiring,
    task: usize,
    edge_no: usize,
    edge: Edge,
) -> Target {
    let local = || {
        mailboxes[edge.task]
            .as_ref()
            .map(|(tx, _)| tx.clone())
            .expect("consumers have mailboxes")
    };
    let (keys, keep) = match edge.routing {
        Routing::Forward => return Target::Forward(Route::Local(local()), edge.port),
        Routing::KeyBy(op) => match &cx.plan.operators[op].op {
            Operator::KeyBy(keys) => (keys.clone(), cx.plan.exchange_keep(op, 0)),
            _ => unreachable!("key_by routing names a key_by"),
        },
        Routing::GroupBy(op) => (
            cx.plan.operators[op]
                .op
                .group_keys(usize::from(edge.port))
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            cx.plan.exchange_keep(op, usize::from(edge.port)),
        ),
    };
    let mut routes = Vec::with_capacity(cx.cores);
    for to in 0..cx.cores {
        if to == cx.core {
            routes.push(Route::Local(local()));
        } else if let Some(tx) = wiring.senders.remove(&(task, edge_no, to)) {
            routes.push(Route::Remote(tx.connect().await));
        } else {
            let (peer, stream) = wiring
                .net_out
                .remove(&(task, edge_no, to))
                .expect("wired for every slot pair");
            let failure = cx.failure.clone();
            let tls = cx.hub.as_ref().and_then(|hub| hub.tls().cloned());
            let sender = crate::exchange::NetSender::connect(peer, stream, failure, tls).await;
            routes.push(Route::Net(Rc::new(sender)));
        }
    }
    Target::Partitioned {
        routes,
        keys,
        max_parallelism: cx.plan.settings.max_parallelism,
        port: edge.port,
        keep,
    }
}
