//! Watermark alignment (`settings.watermark_alignment`): a source instance whose watermark
//! runs more than the allowed drift ahead of the slowest source instance of the node holds
//! back, as Flink's `withWatermarkAlignment` does, so a fast input does not pile up in the
//! state of a join or window waiting for a slow one.
//!
//! Every source instance of the node publishes its watermark here; instances without event
//! time, finished or idle ones, and the slots of other nodes count as infinitely far ahead, so
//! they hold no one back. An instance is held only between batches, at the point where its
//! loop also honours a paused pipeline, after it sent any due checkpoint barrier: a held
//! source never keeps a barrier from the operators that align on it.

use std::sync::atomic::{AtomicI64, Ordering};

use wire_core::frontend::plan::Plan;

/// The watermark of a slot that holds no one back.
const AHEAD_OF_ALL: i64 = i64::MAX;

/// The published watermarks of every (source, slot) of the node.
#[derive(Debug)]
pub(crate) struct SourceClocks {
    /// The drift allowed, when alignment is on.
    drift_ms: Option<i64>,
    slots: usize,
    /// `watermarks[source * slots + slot]`.
    watermarks: Vec<AtomicI64>,
}

impl SourceClocks {
    /// Clocks for `plan`'s sources over `slots` slots of which `local` run on this node.
    pub(crate) fn new(plan: &Plan, slots: usize, local: &[usize]) -> SourceClocks {
        let drift_ms = plan
            .settings
            .watermark_alignment_ms
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let mut watermarks = Vec::with_capacity(plan.sources.len() * slots);
        for source in &plan.sources {
            let timed = source.time.is_some() || source.time_expr.is_some();
            for slot in 0..slots {
                let waits = timed && local.contains(&slot);
                watermarks.push(AtomicI64::new(if waits { i64::MIN } else { AHEAD_OF_ALL }));
            }
        }
        SourceClocks {
            drift_ms,
            slots,
            watermarks,
        }
    }

    fn index(&self, source: usize, slot: usize) -> usize {
        source * self.slots + slot
    }

    /// Records the watermark `source`'s instance on `slot` sent.
    pub(crate) fn publish(&self, source: usize, slot: usize, watermark: i64) {
        if let Some(clock) = self.watermarks.get(self.index(source, slot)) {
            clock.store(watermark, Ordering::Relaxed);
        }
    }

    /// The instance is finished or idle: it holds no one back.
    pub(crate) fn release(&self, source: usize, slot: usize) {
        self.publish(source, slot, AHEAD_OF_ALL);
    }

    /// Whether `source`'s instance on `slot` is more than the drift ahead of the slowest
    /// other instance and should wait.
    pub(crate) fn ahead(&self, source: usize, slot: usize) -> bool {
        let Some(drift) = self.drift_ms else {
            return false;
        };
        let me = self.index(source, slot);
        let Some(mine) = self.watermarks.get(me).map(|c| c.load(Ordering::Relaxed)) else {
            return false;
        };
        if mine == AHEAD_OF_ALL {
            return false;
        }
        let slowest = (self.watermarks.iter().enumerate())
            .filter(|(index, _)| *index != me)
            .map(|(_, clock)| clock.load(Ordering::Relaxed))
            .min()
            .unwrap_or(AHEAD_OF_ALL);
        mine > slowest.saturating_add(drift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::spec::PipelineSpec;

    fn plan(settings: &str) -> Plan {
        let text = format!(
            "{settings}sources:\n  a: {{type: nexmark, stream: person}}\n  b: {{type: nexmark, stream: auction}}\n  c: {{type: file, path: c.csv, schema: {{x: i64}}}}\noperators:\n  - name: u\n    from: a\n    filter: id > 0\nsinks:\n  out: {{type: blackhole, from: u}}\n  b_out: {{type: blackhole, from: b}}\n  c_out: {{type: blackhole, from: c}}\n"
        );
        let spec = PipelineSpec::parse("t.yaml", &text).expect("spec");
        Plan::from_spec(&spec).expect("plan")
    }

    #[test]
    fn a_source_ahead_of_the_slowest_by_more_than_the_drift_waits() {
        let clocks = SourceClocks::new(&plan("settings: {watermark_alignment: 10s}\n"), 2, &[0, 1]);
        // Nobody has a watermark yet: a first one far ahead waits for the others.
        clocks.publish(0, 0, 5_000);
        assert!(clocks.ahead(0, 0));
        for (source, slot) in [(0, 1), (1, 0), (1, 1)] {
            clocks.publish(source, slot, 0);
        }
        assert!(!clocks.ahead(0, 0), "5 s ahead is within 10 s");
        clocks.publish(0, 0, 10_001);
        assert!(clocks.ahead(0, 0));
        assert!(!clocks.ahead(1, 0), "the slowest never waits");
        // The slowest finishing (or going idle) lets the others go, down to the next slowest.
        clocks.publish(0, 1, 9_000);
        clocks.release(1, 0);
        clocks.release(1, 1);
        assert!(!clocks.ahead(0, 0));
        clocks.publish(0, 0, 19_001);
        assert!(clocks.ahead(0, 0), "9 s is the slowest now");
    }

    #[test]
    fn without_the_setting_or_event_time_or_a_local_slot_nothing_waits() {
        let off = SourceClocks::new(&plan(""), 1, &[0]);
        off.publish(0, 0, i64::MAX - 1);
        assert!(!off.ahead(0, 0));
        // The file source has no event time, and slot 1 runs on another node: neither holds
        // the nexmark sources of slot 0 back.
        let clocks = SourceClocks::new(&plan("settings: {watermark_alignment: 1s}\n"), 2, &[0]);
        clocks.publish(0, 0, 500);
        clocks.publish(1, 0, 0);
        assert!(!clocks.ahead(0, 0));
        clocks.publish(0, 0, 1_001);
        assert!(clocks.ahead(0, 0));
    }
}
