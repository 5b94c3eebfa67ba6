//! The Nexmark source: the deterministic generator of `wire_core::nexmark`, partitioned by
//! event number (partition `p` of `P` generates events `p, p + P, p + 2P, ...`), so every
//! partition's event time advances and the union of partitions is the reference stream.

use std::time::{Duration, Instant};

use wire_core::frontend::spec::NexmarkSource;
use wire_core::nexmark::{EventScratch, Generator, EVENT_NUMBER_MAX};
use wire_core::{BatchBuilder, PartitionId, StreamId};

use wire_storage::checkpoint::SourcePosition;

use super::{owned_partitions, Emitter};
use crate::pipeline::CoreCx;
use crate::Error;

pub(super) async fn run(
    cx: &CoreCx,
    index: usize,
    spec: &NexmarkSource,
    emitter: &mut Emitter,
) -> Result<(), Error> {
    let generator = Generator::new(spec.generator.clone())?;
    // A restored run keeps the partitioning its positions are of.
    let restored = emitter.restored().cloned();
    let partitions = match &restored {
        Some(saved) if saved.partitions > 0 => saved.partitions,
        _ => spec.partitions.unwrap_or(cx.cores as u32).max(1),
    };
    let mine = owned_partitions(cx, partitions);
    let step = u64::from(partitions);
    let limit = spec
        .events
        .unwrap_or(EVENT_NUMBER_MAX)
        .min(EVENT_NUMBER_MAX);
    emitter.own_partitions(&mine);
    let mut next: Vec<u64> = mine
        .iter()
        .map(|p| {
            let saved = restored
                .as_ref()
                .and_then(|s| s.positions.iter().find(|at| at.partition == *p));
            saved.map_or(u64::from(*p), |at| at.position)
        })
        .collect();
    let positions = |next: &[u64]| -> Vec<SourcePosition> {
        mine.iter()
            .zip(next)
            .map(|(partition, position)| SourcePosition {
                partition: *partition,
                position: *position,
                line: 0,
                token: None,
            })
            .collect()
    };
    let batch_rows = cx.plan.settings.batch_rows;
    let stream = StreamId(index as u32);
    let mut builder = BatchBuilder::with_capacity(stream, PartitionId(0), 256 << 10);
    // One per source instance: events are generated into it and pushed without allocating.
    let mut scratch = EventScratch::default();
    let started = Instant::now();
    // A restored source continues its pace from where it stopped, not from event 0.
    let resumed_at = if restored.is_some() {
        next.iter().copied().min().unwrap_or(0)
    } else {
        0
    };
    while !cx.stopping() {
        while let Some(id) = emitter.barrier_due() {
            emitter.inject(id, partitions, positions(&next)).await;
        }
        if cx.paused() {
            super::paused().await;
            continue;
        }
        let due = match spec.rate {
            Some(rate) => resumed_at
                .saturating_add(due_events(started, rate))
                .min(limit),
            None => limit,
        };
        let mut produced = 0;
        for (slot, partition) in next.iter_mut().zip(&mine) {
            builder.set_origin(stream, PartitionId(*partition));
            let mut n = *slot;
            while builder.row_count() < batch_rows && n < due {
                generator.push_event_of(spec.stream, n, &mut scratch, &mut builder)?;
                n += step;
            }
            produced += (n - *slot) / step;
            emitter.events((n - *slot) / step);
            *slot = n;
            if !builder.is_empty() {
                emitter.emit(builder.finish()).await?;
            }
        }
        if next.iter().all(|n| *n >= limit) {
            break;
        }
        if produced == 0 {
            // Rate-limited and nothing due yet.
            emitter.tick().await;
            glommio::timer::sleep(Duration::from_millis(1)).await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
    emitter.finished(partitions, positions(&next));
    Ok(())
}

/// Events due by now at `rate` events per second since `started`.
fn due_events(started: Instant, rate: u64) -> u64 {
    (started.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64
}
