//! Sources: each core runs one instance of every source, over the partitions it owns
//! (partition `p` belongs to core `p % cores`), and pushes batches through its fused chain.

mod file;
mod ingest;
mod nexmark;

use std::rc::Rc;

use wire_core::spec::SourceKind;
use wire_core::Batch;

use crate::chain::Chain;
use crate::outlet::Outlet;
use crate::probe::Counters;
use crate::runtime::CoreCx;
use crate::Error;

/// Runs source `index`'s instance on this core, then ends its outputs.
pub(crate) async fn run(cx: Rc<CoreCx>, index: usize, chain: Chain, outlet: Outlet) {
    let mut emitter = Emitter {
        cx: cx.clone(),
        chain,
        outlet,
        node: index,
    };
    let source = &cx.plan.sources[index];
    let result = match &source.kind {
        SourceKind::Nexmark(spec) => nexmark::run(&cx, index, spec, &mut emitter).await,
        SourceKind::File(spec) => file::run(&cx, index, spec, &mut emitter).await,
        SourceKind::Ingest(spec) => ingest::run(&cx, index, spec, &mut emitter).await,
        other => unreachable!("the plan checker admits no other source kind: {other:?}"),
    };
    if let Err(err) = result {
        cx.failure.record(err);
    }
    emitter.outlet.finish().await;
}

/// The partitions of `partitions` that `cx`'s core owns.
pub(crate) fn owned_partitions(cx: &CoreCx, partitions: u32) -> Vec<u32> {
    (0..partitions)
        .filter(|p| *p as usize % cx.cores == cx.core)
        .collect()
}

/// Counts a source's output and hands it to the fused chain and the outlet.
pub(crate) struct Emitter {
    cx: Rc<CoreCx>,
    chain: Chain,
    outlet: Outlet,
    node: usize,
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

    /// Emits `batch` downstream, waiting while downstream queues are full.
    pub(crate) async fn emit(&mut self, batch: Batch) -> Result<(), Error> {
        Counters::add(&self.counters().rows_out, batch.row_count() as u64);
        self.cx.probe.first_batch();
        if let Some(out) = self.chain.process(batch)? {
            self.outlet.send(out).await?;
        }
        Ok(())
    }
}
