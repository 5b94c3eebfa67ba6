//! An operator task: a mailbox, an optional stateful head, the fused chain after it and its
//! outlets. Batches run through the head and the chain; watermarks are min-combined over the
//! senders, fire the head's windows, and are forwarded after the results they released.
//!
//! After a failure the task keeps draining its mailbox, so upstream tasks never block forever.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wire_core::time::watermark::InputWatermarks;
use wire_core::Batch;

use crate::chain::Chain;
use crate::checkpoint::{Ack, AckContent, Delivery, Inbox};
use crate::message::Message;
use crate::operator::{Output, Stateful};
use crate::outlet::Outlet;
use crate::pipeline::CoreCx;
use crate::probe::Counters;
use crate::Error;

/// Result batches a head may hold before a paused firing waits for them to leave.
const OUTPUT_BATCHES: usize = 16;

/// The parts of one operator task instance.
pub(crate) struct OperatorTask {
    pub(crate) cx: Rc<CoreCx>,
    /// The task's index in the physical graph.
    pub(crate) task: usize,
    pub(crate) inbox: Inbox,
    pub(crate) senders: usize,
    /// The stateful head, if the task starts with one, and its probe node.
    pub(crate) head: Option<(Box<dyn Stateful>, usize)>,
    pub(crate) chain: Chain,
    pub(crate) outlet: Outlet,
    /// Where the head's late rows go, if its late output is read, and that output's probe
    /// node.
    pub(crate) side: Option<(Outlet, usize)>,
    /// The checkpoint of the head's last snapshot, which its changes since are relative to.
    pub(crate) snapshotted: Option<u64>,
}

enum Event {
    Delivery(Delivery),
    Timer,
}

/// Milliseconds since the epoch on the wall clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl OperatorTask {
    pub(crate) async fn run(mut self) {
        let mut inputs = InputWatermarks::new(self.senders);
        let mut out = Output::new(self.cx.plan.settings.batch_rows).with_limit(OUTPUT_BATCHES);
        let mut ends = 0;
        let mut failed = false;
        while ends < self.senders {
            let event = self.next_event().await;
            let result = match event {
                Event::Delivery(Delivery::Closed) => break,
                Event::Timer => self.on_timer(&mut out).await,
                Event::Delivery(Delivery::Aligned(id)) => {
                    let took = self.inbox.take_alignment();
                    if let Some(counters) = self.entry_counters() {
                        counters.aligned(took);
                    }
                    self.on_aligned(Some(id), failed).await;
                    Ok(())
                }
                Event::Delivery(Delivery::Message(message)) => match message {
                    Message::Batch { .. } if failed => Ok(()),
                    Message::Batch { batch, port, .. } => {
                        self.on_batch(batch, port, &mut out).await
                    }
                    // The inbox consumes barriers and reports alignments instead.
                    Message::Barrier { .. } => Ok(()),
                    Message::Watermark { sender, time } => match inputs.advance(sender, time) {
                        Some(watermark) => self.on_watermark(watermark, &mut out).await,
                        None => Ok(()),
                    },
                    Message::Idle { sender } => match inputs.idle(sender) {
                        Some(watermark) => self.on_watermark(watermark, &mut out).await,
                        None if inputs.all_idle() => {
                            self.outlet.send_idle().await;
                            Ok(())
                        }
                        None => Ok(()),
                    },
                    Message::End { sender } => {
                        ends += 1;
                        match inputs.end(sender) {
                            Some(watermark) => self.on_watermark(watermark, &mut out).await,
                            None => Ok(()),
                        }
                    }
                },
            };
            if let Err(err) = result {
                if !failed {
                    self.cx.failure.record(err);
                }
                failed = true;
            }
        }
        if !failed {
            self.on_aligned(None, false).await;
        }
        self.outlet.finish().await;
        if let Some((side, _)) = self.side.as_mut() {
            side.finish().await;
        }
    }

    /// Every input's barrier of checkpoint `id` arrived (or, with `None`, every input ended):
    /// acks with a copy of the head's state and passes the barrier on.
    async fn on_aligned(&mut self, id: Option<u64>, failed: bool) {
        let Some(checkpoints) = self.cx.checkpoints.clone() else {
            return;
        };
        let content = match (&mut self.head, failed) {
            (_, true) => AckContent::Failed("the task failed".into()),
            (None, false) => AckContent::Passed,
            (Some((head, node)), false) => {
                let probe = &self.cx.probe.nodes[*node];
                let (name, kind) = (&probe.name, &probe.kind);
                let max_parallelism = self.cx.plan.settings.max_parallelism;
                // Only changes if this instance's previous snapshot is the base's (a final
                // ack, `id: None`, always holds the whole state).
                let base = checkpoints
                    .base()
                    .filter(|base| id.is_some() && self.snapshotted == Some(*base));
                let changes = match base {
                    Some(base) => head
                        .snapshot_changes(max_parallelism)
                        .map(|result| result.map(|sections| (sections, Some(base)))),
                    None => None,
                };
                let started = std::time::Instant::now();
                let snapshot = changes.unwrap_or_else(|| {
                    head.snapshot(max_parallelism)
                        .map(|sections| (sections, None))
                });
                // The core runs nothing else while its operator encodes: this is the pause a
                // checkpoint costs the data path.
                tracing::debug!(operator = %name, core = self.cx.core, checkpoint = ?id,
                    delta = matches!(&snapshot, Ok((_, Some(_)))),
                    bytes = snapshot.as_ref().map_or(0, |(s, _)| s.iter().map(|s| s.bytes.len()).sum::<usize>()),
                    took_ms = started.elapsed().as_secs_f64() * 1e3, "operator state encoded");
                match snapshot {
                    Ok((sections, delta_of)) => {
                        self.snapshotted = id;
                        AckContent::Operator {
                            name: name.clone(),
                            kind: kind.clone(),
                            sections,
                            delta_of,
                        }
                    }
                    Err(reason) => AckContent::Failed(format!("operator `{name}`: {reason}")),
                }
            }
        };
        checkpoints.ack(Ack {
            checkpoint: id,
            core: self.cx.core,
            task: self.task,
            content,
        });
        if let Some(id) = id {
            self.outlet.send_barrier(id).await;
            if let Some((side, _)) = self.side.as_mut() {
                side.send_barrier(id).await;
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let deadline = self.head.as_ref().and_then(|(head, _)| head.next_timer());
        let Some(at) = deadline else {
            return Event::Delivery(self.inbox.next().await);
        };
        let wait = Duration::from_millis(at.saturating_sub(now_ms()).max(0) as u64);
        let inbox = &mut self.inbox;
        futures_lite::future::or(async { Event::Delivery(inbox.next().await) }, async {
            glommio::timer::sleep(wait).await;
            Event::Timer
        })
        .await
    }

    /// The counters of the task's first node (its head, else its chain's first step): where
    /// its mailbox and alignments are counted.
    fn entry_counters(&self) -> Option<&Counters> {
        let node = match &self.head {
            Some((_, node)) => Some(*node),
            None => self.chain.first_node(),
        }?;
        Some(&self.cx.probe.nodes[node].cores[self.cx.core])
    }

    async fn on_batch(&mut self, batch: Batch, port: u8, out: &mut Output) -> Result<(), Error> {
        if let Some(counters) = self.entry_counters() {
            let queued = self.inbox.queued() as u64;
            counters.mailbox.store(queued, Ordering::Relaxed);
        }
        let Some((head, node)) = self.head.as_mut() else {
            if let Some(result) = self.chain.process(batch)? {
                self.outlet.send(result).await?;
            }
            return Ok(());
        };
        let counters = &self.cx.probe.nodes[*node].cores[self.cx.core];
        counters.batch_in(batch.row_count(), batch.encoded_len());
        head.on_batch(&batch, usize::from(port), now_ms(), out)?;
        drop(batch);
        self.drain(out).await
    }

    async fn on_timer(&mut self, out: &mut Output) -> Result<(), Error> {
        if let Some((head, _)) = self.head.as_mut() {
            head.on_timer(now_ms(), out)?;
        }
        self.drain(out).await?;
        self.finish_output(out).await
    }

    async fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), Error> {
        if let Some((head, _)) = self.head.as_mut() {
            head.on_watermark(watermark, out)?;
            self.drain(out).await?;
            self.finish_output(out).await?;
        }
        self.outlet.send_watermark(watermark).await;
        if let Some((side, _)) = self.side.as_mut() {
            side.send_watermark(watermark).await;
        }
        Ok(())
    }

    /// Lets the head go on with output it paused when `out` was full, draining it each time,
    /// until none is left.
    async fn finish_output(&mut self, out: &mut Output) -> Result<(), Error> {
        while let Some((head, _)) = self.head.as_mut().filter(|(head, _)| head.pending()) {
            head.resume(out)?;
            self.drain(out).await?;
        }
        Ok(())
    }

    /// Sends what the head produced: results through the chain, late rows to the side outlet.
    async fn drain(&mut self, out: &mut Output) -> Result<(), Error> {
        out.seal();
        if let Some((head, node)) = self.head.as_ref() {
            let counters = &self.cx.probe.nodes[*node].cores[self.cx.core];
            let rows: usize = out.ready.iter().map(Batch::row_count).sum();
            let bytes: usize = out.ready.iter().map(|b| b.encoded_len()).sum();
            counters.batch_out(rows, bytes);
            Counters::add(&counters.late, std::mem::take(&mut out.late_rows));
            counters
                .groups
                .store(head.groups() as u64, Ordering::Relaxed);
            counters
                .state_bytes
                .store(head.state_bytes() as u64, Ordering::Relaxed);
        }
        for batch in std::mem::take(&mut out.ready) {
            if let Some(result) = self.chain.process(batch)? {
                self.outlet.send(result).await?;
            }
        }
        let late = std::mem::take(&mut out.late_ready);
        if let Some((side, node)) = self.side.as_mut() {
            let counters = &self.cx.probe.nodes[*node].cores[self.cx.core];
            for batch in late {
                counters.batch_in(batch.row_count(), batch.encoded_len());
                counters.batch_out(batch.row_count(), batch.encoded_len());
                side.send(batch).await?;
            }
        }
        Ok(())
    }
}
