//! A task's output side: forwards batches to the next tasks on the same core, or routes each
//! row to the core owning its key group (`key_by`), over bounded queues.
//!
//! A full queue suspends the sending task — that is the backpressure — and the time spent
//! suspended is counted in the probe. Same-core queues are glommio local channels; other cores
//! are reached over one single-producer single-consumer shared channel per core pair.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::local_channel::LocalSender;
use glommio::channels::shared_channel::ConnectedSender;
use wire_core::frontend::expr::Expr;
use wire_core::record::key::{key_group, key_group_owner, KeyHasher};
use wire_core::time::watermark::SenderId;
use wire_core::{Batch, BatchBuilder, PartitionId, StreamId};

use crate::message::Message;
use crate::probe::{Counters, RunProbe};

/// A queue to one task instance.
pub enum Route {
    /// The consumer runs on this core.
    Local(Rc<LocalSender<Message>>),
    /// The consumer runs on another core.
    Remote(ConnectedSender<Message>),
    /// The consumer runs on another node.
    Net(Rc<crate::exchange::NetSender>),
}

impl Route {
    /// Sends `message`, waiting while the queue is full. `false` if the consumer is gone.
    pub async fn send(&self, message: Message) -> bool {
        match self {
            Route::Local(sender) => sender.send(message).await.is_ok(),
            Route::Remote(sender) => sender.send(message).await.is_ok(),
            Route::Net(sender) => sender.send(message).await,
        }
    }
}

/// Where one consumer's share of the output goes.
pub enum Target {
    /// Every batch to the consumer instance on this core, for its input `port`.
    Forward(Route, u8),
    /// Each row to the core owning its key group; `routes[c]` reaches core `c`.
    Partitioned {
        /// One route per core.
        routes: Vec<Route>,
        /// The key expressions.
        keys: Vec<Expr>,
        /// Key groups of the pipeline.
        max_parallelism: u32,
        /// The consumer's input port.
        port: u8,
        /// The fields the consumer reads, when not all: the others cross as NULL, so a
        /// batch carries only what is used (`Plan::exchange_keep`).
        keep: Option<Vec<bool>>,
    },
}

/// All of a task's outputs, plus the probe slot its blocked time is charged to.
pub struct Outlet {
    targets: Vec<Target>,
    builders: Vec<BatchBuilder>,
    owners: Vec<u32>,
    probe: Arc<RunProbe>,
    node: usize,
    core: usize,
    sender: SenderId,
    closed: bool,
}

impl Outlet {
    /// An outlet of task instance `sender`, charging blocked time to probe node `node` on
    /// `core`.
    pub fn new(
        targets: Vec<Target>,
        probe: Arc<RunProbe>,
        node: usize,
        core: usize,
        sender: SenderId,
    ) -> Outlet {
        let cores = targets
            .iter()
            .map(|t| match t {
                Target::Partitioned { routes, .. } => routes.len(),
                Target::Forward(..) => 0,
            })
            .max()
            .unwrap_or(0);
        Outlet {
            targets,
            builders: (0..cores)
                .map(|_| BatchBuilder::with_capacity(StreamId(0), PartitionId(0), 16 << 10))
                .collect(),
            owners: Vec::new(),
            probe,
            node,
            core,
            sender,
            closed: false,
        }
    }

    /// Whether every consumer has gone away (nothing more can be delivered).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Delivers `batch` to every target.
    pub async fn send(&mut self, batch: Batch) -> Result<(), wire_core::Error> {
        let count = self.targets.len();
        let mut batch = Some(batch);
        for index in 0..count {
            let this = if index + 1 == count {
                batch.take().expect("the last target takes the batch")
            } else {
                batch.as_ref().expect("kept for later targets").clone()
            };
            self.send_to(index, this).await?;
        }
        Ok(())
    }

    async fn send_to(&mut self, index: usize, batch: Batch) -> Result<(), wire_core::Error> {
        if matches!(self.targets[index], Target::Forward(..)) {
            self.deliver_forward(index, batch).await;
            Ok(())
        } else {
            self.deliver_partitioned(index, batch).await
        }
    }

    async fn deliver_forward(&mut self, index: usize, batch: Batch) {
        let Target::Forward(route, port) = &self.targets[index] else {
            return;
        };
        let started = Instant::now();
        if !route
            .send(Message::Batch {
                batch,
                port: *port,
                sender: self.sender,
            })
            .await
        {
            self.closed = true;
        }
        self.charge(started);
    }

    async fn deliver_partitioned(
        &mut self,
        index: usize,
        batch: Batch,
    ) -> Result<(), wire_core::Error> {
        let Target::Partitioned {
            routes,
            keys,
            max_parallelism,
            port,
            keep,
        } = &self.targets[index]
        else {
            return Ok(());
        };
        if routes.len() == 1 {
            // One core owns every key group: the batch goes as it is.
            let started = Instant::now();
            if !routes[0]
                .send(Message::Batch {
                    batch,
                    port: *port,
                    sender: self.sender,
                })
                .await
            {
                self.closed = true;
            }
            self.charge(started);
            return Ok(());
        }
        let view = batch.view();
        let header = batch.header();
        route_rows(
            &view,
            keys,
            *max_parallelism,
            routes.len(),
            &mut self.owners,
        );
        split_rows(&view, &self.owners, keep.as_deref(), &mut self.builders)?;
        let started = Instant::now();
        for (core, builder) in self.builders.iter_mut().enumerate() {
            if builder.is_empty() {
                continue;
            }
            builder.widen_event_time(header.min_event_time, header.max_event_time);
            if !routes[core]
                .send(Message::Batch {
                    batch: builder.finish_local(),
                    port: *port,
                    sender: self.sender,
                })
                .await
            {
                self.closed = true;
            }
        }
        self.charge(started);
        Ok(())
    }

    /// Sends a watermark on every route (a partitioned target reaches every core).
    pub async fn send_watermark(&mut self, time: i64) {
        self.probe.nodes[self.node].cores[self.core].watermark(time);
        let sender = self.sender;
        self.broadcast(|| Message::Watermark { sender, time }).await;
    }

    /// Tells every route this instance is idle.
    pub async fn send_idle(&mut self) {
        let sender = self.sender;
        self.broadcast(|| Message::Idle { sender }).await;
    }

    /// Sends checkpoint `id`'s barrier on every route, after everything sent so far.
    pub async fn send_barrier(&mut self, id: u64) {
        let sender = self.sender;
        self.broadcast(|| Message::Barrier { sender, id }).await;
    }

    /// Sends `End` on every route. Call once, after the last batch.
    pub async fn finish(&mut self) {
        let sender = self.sender;
        self.broadcast(|| Message::End { sender }).await;
    }

    async fn broadcast(&mut self, message: impl Fn() -> Message) {
        let started = Instant::now();
        for target in &self.targets {
            let routes = match target {
                Target::Forward(route, _) => std::slice::from_ref(route),
                Target::Partitioned { routes, .. } => routes.as_slice(),
            };
            for route in routes {
                if !route.send(message()).await {
                    self.closed = true;
                }
            }
        }
        self.charge(started);
    }

    fn charge(&self, started: Instant) {
        let counters = &self.probe.nodes[self.node].cores[self.core];
        Counters::add(&counters.blocked_ns, started.elapsed().as_nanos() as u64);
    }
}

/// Copies each row of `view` into the builder of the core that owns it (`owners`), with
/// the fields `keep` leaves out as NULL.
fn split_rows(
    view: &wire_core::BatchView<'_>,
    owners: &[u32],
    keep: Option<&[bool]>,
    builders: &mut [BatchBuilder],
) -> Result<(), wire_core::Error> {
    let header = view.header();
    for builder in builders.iter_mut() {
        builder.set_origin(header.stream, header.partition);
    }
    for (row, owner) in owners.iter().enumerate() {
        let builder = &mut builders[*owner as usize];
        match keep {
            Some(keep) => builder.push_row_masked(view, row, keep)?,
            None => builder.push_row_of(view, row)?,
        }
    }
    Ok(())
}

/// The owning core of every row of `view`, by the hash of its keys.
fn route_rows(
    view: &wire_core::BatchView<'_>,
    keys: &[Expr],
    max_parallelism: u32,
    cores: usize,
    owners: &mut Vec<u32>,
) {
    owners.clear();
    for row in view.rows() {
        let mut hasher = KeyHasher::default();
        for key in keys {
            hasher.add(key.eval(row).as_value_ref());
        }
        let group = key_group(hasher.finish(), max_parallelism);
        owners.push(key_group_owner(group, max_parallelism, cores) as u32);
    }
}
