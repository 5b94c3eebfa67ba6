//! Sources: each core runs one instance of every source, over the partitions it owns
//! (partition `p` belongs to core `p % cores`), and pushes batches through its fused chain.

pub(crate) mod align;
mod file;
pub(crate) mod ingest;
mod kafka;
mod mongodb;
mod nexmark;

use std::rc::Rc;
use std::time::Duration;

use wire_core::frontend::spec::SourceKind;
use wire_core::Batch;

use wire_core::time::watermark::{SourceWatermarks, WatermarkUpdate};
use wire_core::time::window::TimeAttr;

use wire_storage::checkpoint::{SourcePosition, SourceState};

use crate::chain::Chain;
use crate::checkpoint::{Ack, AckContent};
use crate::outlet::Outlet;
use crate::pipeline::CoreCx;
use crate::probe::Counters;
use crate::task::now_ms;
use crate::Error;

/// Runs source `index`'s instance on this core, then ends its outputs.
pub(crate) async fn run(cx: Rc<CoreCx>, index: usize, chain: Chain, outlet: Outlet) {
    let source = &cx.plan.sources[index];
    let time = match (&source.time, &source.time_expr) {
        (Some(attr), _) => Some(RowTime::Field(*attr)),
        (None, Some(expr)) => Some(RowTime::Expr(expr.clone())),
        (None, None) => None,
    };
    let watermarks =
        time.map(|time| (SourceWatermarks::new(source.watermark, &[], now_ms()), time));
    // Not `requested()`: a checkpoint triggered before this task started still needs its
    // barrier (with the positions it starts from).
    let injected = cx.checkpoints.as_ref().map_or(0, |c| c.initial());
    let mut emitter = Emitter {
        cx: cx.clone(),
        task: index,
        injected,
        chain,
        outlet,
        node: index,
        watermarks,
        rows_carry_time: !matches!(source.kind, SourceKind::Ingest(_)),
    };
    let result = match &source.kind {
        SourceKind::Nexmark(spec) => nexmark::run(&cx, index, spec, &mut emitter).await,
        SourceKind::File(spec) => file::run(&cx, index, spec, &mut emitter).await,
        SourceKind::Ingest(spec) => ingest::run(&cx, index, spec, &mut emitter).await,
        SourceKind::Kafka(spec) => kafka::run(&cx, index, spec, &mut emitter).await,
        SourceKind::Mongodb(spec) => mongodb::run(&cx, index, spec, &mut emitter).await,
        other => unreachable!("the plan checker admits no other source kind: {other:?}"),
    };
    if let Err(err) = result {
        if let Some(checkpoints) = &cx.checkpoints {
            checkpoints.ack(Ack {
                checkpoint: None,
                core: cx.core,
                task: index,
                content: AckContent::Failed(err.to_string()),
            });
        }
        cx.failure.record(err);
    }
    emitter.outlet.finish().await;
}

/// How often a paused source looks whether it is resumed (or owes a barrier, or stops).
const PAUSE_POLL: Duration = Duration::from_millis(5);

/// How often a source held back by watermark alignment looks whether it may go on.
const ALIGN_POLL: Duration = Duration::from_micros(500);

/// Waits a little while the source is paused; the caller looks again (barriers still pass).
pub(crate) async fn paused() {
    glommio::timer::sleep(PAUSE_POLL).await;
}

/// The partitions of `partitions` that `cx`'s core owns.
pub(crate) fn owned_partitions(cx: &CoreCx, partitions: u32) -> Vec<u32> {
    (0..partitions)
        .filter(|p| *p as usize % cx.cores == cx.core)
        .collect()
}

/// Where a source row's event time is.
enum RowTime {
    /// A field of the row.
    Field(TimeAttr),
    /// `event_time:` written as an expression.
    Expr(wire_core::frontend::expr::Expr),
}

/// Counts a source's output, hands it to the fused chain and the outlet, and sends the
/// watermarks it implies.
pub(crate) struct Emitter {
    cx: Rc<CoreCx>,
    /// The source's task index (sources are the first tasks).
    task: usize,
    /// The last checkpoint whose barrier this instance sent.
    injected: u64,
    chain: Chain,
    outlet: Outlet,
    node: usize,
    /// Watermark state and where a row's event time is, when the source has event time.
    watermarks: Option<(SourceWatermarks, RowTime)>,
    /// Whether batch headers' event-time bounds were computed by us (not by a producer).
    rows_carry_time: bool,
}

impl Emitter {
    fn counters(&self) -> &Counters {
        &self.cx.probe.nodes[self.node].cores[self.cx.core]
    }

    /// Counts `n` consumed input events (rows or generator events).
    pub(crate) fn events(&self, n: u64) {
        Counters::add(&self.counters().events, n);
    }

    /// Counts `n` rejected input records.
    pub(crate) fn rejected(&self, n: u64) {
        Counters::add(&self.counters().rejected, n);
    }

    /// Where the instance's retried requests are counted, for its blocking requests.
    pub(crate) fn tally(&self) -> crate::sink::refusals::Tally {
        crate::sink::refusals::Tally::new(self.cx.probe.clone(), self.node, self.cx.core)
    }

    /// Declares the partitions this instance reads; until each has produced rows (or gone
    /// idle) the watermark waits for it.
    pub(crate) fn own_partitions(&mut self, partitions: &[u32]) {
        if let Some((watermarks, _)) = self.watermarks.as_mut() {
            let now = now_ms();
            for partition in partitions {
                watermarks.add_partition(*partition, now);
            }
        }
    }

    /// Emits `batch` downstream, waiting while downstream queues are full, then the
    /// watermark it advances.
    pub(crate) async fn emit(&mut self, batch: Batch) -> Result<(), Error> {
        self.counters()
            .batch_out(batch.row_count(), batch.encoded_len());
        self.cx.probe.first_batch();
        let update = self.observe(&batch);
        if let (WatermarkUpdate::Advance(_), Some((watermarks, _))) = (update, &self.watermarks) {
            if let Some(range) = watermarks.partition_range() {
                self.counters().partition_times(range);
            }
        }
        if let Some(out) = self.chain.process(batch)? {
            self.outlet.send(out).await?;
        }
        self.send(update).await;
        Ok(())
    }

    /// The next checkpoint whose barrier this instance owes, if one was requested.
    pub(crate) fn barrier_due(&self) -> Option<u64> {
        let requested = self.cx.checkpoints.as_ref()?.requested();
        (requested > self.injected).then_some(self.injected + 1)
    }

    /// Acks checkpoint `id` with this instance's `positions` (of `partitions` in all) and
    /// sends its barrier after everything emitted so far.
    pub(crate) async fn inject(
        &mut self,
        id: u64,
        partitions: u32,
        positions: Vec<SourcePosition>,
    ) {
        self.ack(Some(id), partitions, positions);
        self.outlet.send_barrier(id).await;
        self.injected = id;
    }

    /// This instance's core.
    pub(crate) fn core(&self) -> usize {
        self.cx.core
    }

    /// Partitions of a source with one partition per core.
    pub(crate) fn partitions_hint(&self) -> u32 {
        self.cx.cores as u32
    }

    /// The final ack, as the instance ends, with where it stopped.
    pub(crate) fn finished(&mut self, partitions: u32, positions: Vec<SourcePosition>) {
        self.cx.clocks.release(self.task, self.cx.core);
        self.ack(None, partitions, positions);
    }

    fn ack(&self, checkpoint: Option<u64>, partitions: u32, positions: Vec<SourcePosition>) {
        let Some(checkpoints) = &self.cx.checkpoints else {
            return;
        };
        let name = self.cx.plan.sources[self.task].name.clone();
        checkpoints.ack(Ack {
            checkpoint,
            core: self.cx.core,
            task: self.task,
            content: AckContent::Source {
                name,
                partitions,
                positions,
            },
        });
    }

    /// Where source `name` was in `partition` at the restored checkpoint, if the run restores one.
    pub(crate) fn restored(&self) -> Option<&SourceState> {
        let restore = self.cx.checkpoints.as_ref()?.restore()?;
        let name = &self.cx.plan.sources[self.task].name;
        restore.sources.iter().find(|s| s.name == *name)
    }

    /// Lets idle partitions stop holding the watermark back; call while no rows arrive.
    pub(crate) async fn tick(&mut self) {
        let update = match self.watermarks.as_mut() {
            Some((watermarks, _)) => watermarks.tick(now_ms()),
            None => WatermarkUpdate::None,
        };
        self.send(update).await;
    }

    fn observe(&mut self, batch: &Batch) -> WatermarkUpdate {
        let Some((watermarks, time)) = self.watermarks.as_mut() else {
            return WatermarkUpdate::None;
        };
        let header = batch.header();
        let max = match time {
            RowTime::Field(_) if self.rows_carry_time => header.max_event_time,
            // Producers' headers are not trusted: read the event time of every row.
            RowTime::Field(attr) => {
                let view = batch.view();
                view.rows()
                    .filter_map(|row| crate::operator::row_time(row, *attr))
                    .max()
                    .unwrap_or(i64::MIN)
            }
            RowTime::Expr(expr) => {
                let view = batch.view();
                view.rows()
                    .filter_map(|row| match expr.eval(row) {
                        wire_core::frontend::expr::Datum::Timestamp(ms)
                        | wire_core::frontend::expr::Datum::I64(ms) => Some(ms),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(i64::MIN)
            }
        };
        if max == i64::MIN {
            return watermarks.tick(now_ms());
        }
        watermarks.observe(header.partition.0, max, now_ms())
    }

    async fn send(&mut self, update: WatermarkUpdate) {
        match update {
            WatermarkUpdate::None => {}
            WatermarkUpdate::Advance(watermark) => {
                self.cx.clocks.publish(self.task, self.cx.core, watermark);
                self.outlet.send_watermark(watermark).await;
            }
            WatermarkUpdate::Idle => {
                self.cx.clocks.release(self.task, self.cx.core);
                self.outlet.send_idle().await;
            }
        }
    }

    /// Whether the instance should produce nothing for now: the pipeline is paused, or its
    /// watermark is too far ahead of the node's slowest source (`settings.watermark_alignment`).
    /// Checked between batches, after any due barrier was sent.
    pub(crate) fn held(&self) -> bool {
        self.cx.paused() || self.cx.clocks.ahead(self.task, self.cx.core)
    }

    /// Waits a little while [`Emitter::held`]; the caller looks again (barriers still pass).
    /// A source held for alignment looks more often than a paused one: the slowest source
    /// can catch up within a batch.
    pub(crate) async fn hold(&self) {
        if self.cx.paused() {
            paused().await;
        } else {
            glommio::timer::sleep(ALIGN_POLL).await;
        }
    }
}
