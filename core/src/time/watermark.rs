//! Watermarks: how sources derive them from the event times they saw, and how a task combines
//! the watermarks of its inputs.
//!
//! A watermark `w` promises that no more rows with event time `<= w` are expected. A source
//! partition's watermark is `max event time seen - max_out_of_orderness - 1`; a partition that
//! produced nothing for `idle_timeout` is idle and does not hold the others back. A task's input
//! watermark is the minimum over its non-idle senders and never goes back. Pure: callers pass
//! the current time in.

/// No watermark yet: nothing is promised.
pub const WATERMARK_MIN: i64 = i64::MIN;
/// The end of the stream: every window may fire.
pub const WATERMARK_MAX: i64 = i64::MAX;

/// How a source generates watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatermarkSpec {
    /// How far behind the largest event time seen rows may still arrive on time.
    pub max_out_of_orderness_ms: i64,
    /// After this long without rows a partition stops holding back the watermark.
    pub idle_timeout_ms: Option<i64>,
}

/// The watermark state of one source instance over the partitions it owns.
#[derive(Debug, Clone)]
pub struct SourceWatermarks {
    spec: WatermarkSpec,
    partitions: Vec<PartitionClock>,
    emitted: i64,
    idle: bool,
}

#[derive(Debug, Clone)]
struct PartitionClock {
    partition: u32,
    max_event_time: i64,
    last_active_ms: i64,
}

/// What a source should send after an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatermarkUpdate {
    /// Nothing changed.
    None,
    /// The watermark advanced to this value.
    Advance(i64),
    /// Every partition is idle.
    Idle,
}

impl SourceWatermarks {
    /// Watermarks over `partitions`, all considered active from `now_ms`.
    pub fn new(spec: WatermarkSpec, partitions: &[u32], now_ms: i64) -> SourceWatermarks {
        SourceWatermarks {
            spec,
            partitions: partitions
                .iter()
                .map(|&partition| PartitionClock {
                    partition,
                    max_event_time: WATERMARK_MIN,
                    last_active_ms: now_ms,
                })
                .collect(),
            emitted: WATERMARK_MIN,
            idle: false,
        }
    }

    /// Adds a partition (an ingest connection, say) that starts active at `now_ms`.
    pub fn add_partition(&mut self, partition: u32, now_ms: i64) {
        if self.partitions.iter().all(|p| p.partition != partition) {
            self.partitions.push(PartitionClock {
                partition,
                max_event_time: WATERMARK_MIN,
                last_active_ms: now_ms,
            });
        }
    }

    /// Records rows of `partition` up to `max_event_time` and says what to send.
    pub fn observe(&mut self, partition: u32, max_event_time: i64, now_ms: i64) -> WatermarkUpdate {
        if let Some(clock) = self
            .partitions
            .iter_mut()
            .find(|p| p.partition == partition)
        {
            clock.max_event_time = clock.max_event_time.max(max_event_time);
            clock.last_active_ms = now_ms;
        } else {
            self.partitions.push(PartitionClock {
                partition,
                max_event_time,
                last_active_ms: now_ms,
            });
        }
        self.update(now_ms)
    }

    /// Re-evaluates idleness at `now_ms` (call it while no rows arrive).
    pub fn tick(&mut self, now_ms: i64) -> WatermarkUpdate {
        self.update(now_ms)
    }

    /// The last watermark this source sent.
    pub fn current(&self) -> i64 {
        self.emitted
    }

    /// The newest and the oldest event time over the partitions that have produced rows
    /// (each partition's maximum so far): their difference is the event-time skew across
    /// partitions. `None` before any rows.
    pub fn partition_range(&self) -> Option<(i64, i64)> {
        let seen = self
            .partitions
            .iter()
            .map(|p| p.max_event_time)
            .filter(|t| *t != WATERMARK_MIN);
        seen.fold(None, |range, t| match range {
            None => Some((t, t)),
            Some((newest, oldest)) => Some((newest.max(t), oldest.min(t))),
        })
    }

    fn update(&mut self, now_ms: i64) -> WatermarkUpdate {
        let ooo = self.spec.max_out_of_orderness_ms;
        let is_idle = |clock: &PartitionClock| match self.spec.idle_timeout_ms {
            Some(timeout) => now_ms.saturating_sub(clock.last_active_ms) >= timeout,
            None => false,
        };
        let active: Vec<i64> = self
            .partitions
            .iter()
            .filter(|clock| !is_idle(clock))
            .map(|clock| clock.max_event_time)
            .collect();
        if active.is_empty() {
            if self.idle {
                return WatermarkUpdate::None;
            }
            self.idle = true;
            return WatermarkUpdate::Idle;
        }
        let was_idle = std::mem::replace(&mut self.idle, false);
        let lowest = active.into_iter().min().unwrap_or(WATERMARK_MIN);
        let candidate = if lowest == WATERMARK_MIN {
            WATERMARK_MIN
        } else {
            lowest.saturating_sub(ooo).saturating_sub(1)
        };
        if candidate > self.emitted || (was_idle && self.emitted > WATERMARK_MIN) {
            self.emitted = self.emitted.max(candidate);
            return WatermarkUpdate::Advance(self.emitted);
        }
        WatermarkUpdate::None
    }
}

/// Identifies one upstream task instance: its task index and core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderId(pub u32);

impl SenderId {
    /// The instance of task `task` on `core`.
    pub fn new(task: usize, core: usize) -> SenderId {
        SenderId(((task as u32) << 12) | (core as u32 & 0xfff))
    }
}

/// The combined watermark of a task's inputs: the minimum over its senders that are not idle,
/// `WATERMARK_MIN` until every expected sender reported, never decreasing.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    expected: usize,
    senders: Vec<(SenderId, i64, bool)>,
    current: i64,
}

impl InputWatermarks {
    /// A combiner over `expected` senders.
    pub fn new(expected: usize) -> InputWatermarks {
        InputWatermarks {
            expected,
            senders: Vec::with_capacity(expected),
            current: WATERMARK_MIN,
        }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Whether every sender that reported is idle (and at least one did).
    pub fn all_idle(&self) -> bool {
        !self.senders.is_empty() && self.senders.iter().all(|s| s.2)
    }

    /// A sender's new watermark; `Some(w)` when the combined watermark advanced to `w`.
    pub fn advance(&mut self, sender: SenderId, watermark: i64) -> Option<i64> {
        self.set(sender, watermark, false)
    }

    /// A sender went idle.
    pub fn idle(&mut self, sender: SenderId) -> Option<i64> {
        let last = self.slot(sender).map_or(WATERMARK_MIN, |s| s.1);
        self.set(sender, last, true)
    }

    /// A sender ended: it holds nothing back any more.
    pub fn end(&mut self, sender: SenderId) -> Option<i64> {
        self.set(sender, WATERMARK_MAX, false)
    }

    fn slot(&self, sender: SenderId) -> Option<&(SenderId, i64, bool)> {
        self.senders.iter().find(|s| s.0 == sender)
    }

    fn set(&mut self, sender: SenderId, watermark: i64, idle: bool) -> Option<i64> {
        match self.senders.iter_mut().find(|s| s.0 == sender) {
            Some(slot) => {
                slot.1 = slot.1.max(watermark);
                slot.2 = idle;
            }
            None => self.senders.push((sender, watermark, idle)),
        }
        if self.senders.len() < self.expected {
            return None;
        }
        let combined = self.senders.iter().filter(|s| !s.2).map(|s| s.1).min()?;
        if combined > self.current {
            self.current = combined;
            return Some(combined);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ooo: i64, idle: Option<i64>) -> WatermarkSpec {
        WatermarkSpec {
            max_out_of_orderness_ms: ooo,
            idle_timeout_ms: idle,
        }
    }

    #[test]
    fn a_source_watermark_is_the_slowest_partition_minus_the_bound() {
        let mut w = SourceWatermarks::new(spec(4_000, None), &[0, 2], 0);
        assert_eq!(w.observe(0, 10_000, 1), WatermarkUpdate::None);
        assert_eq!(w.observe(2, 8_000, 2), WatermarkUpdate::Advance(3_999));
        assert_eq!(w.observe(2, 7_000, 3), WatermarkUpdate::None);
        assert_eq!(w.observe(2, 12_000, 4), WatermarkUpdate::Advance(5_999));
    }

    #[test]
    fn the_partition_range_spans_the_partitions_that_produced_rows() {
        let mut w = SourceWatermarks::new(spec(0, None), &[0, 1, 2], 0);
        assert_eq!(w.partition_range(), None);
        w.observe(0, 10_000, 1);
        assert_eq!(w.partition_range(), Some((10_000, 10_000)));
        w.observe(2, 7_000, 2);
        w.observe(0, 9_000, 3);
        assert_eq!(w.partition_range(), Some((10_000, 7_000)), "skew 3 s");
    }

    #[test]
    fn idle_partitions_stop_holding_the_watermark_back() {
        let mut w = SourceWatermarks::new(spec(0, Some(100)), &[0, 1], 0);
        assert_eq!(w.observe(0, 5_000, 10), WatermarkUpdate::None);
        assert_eq!(w.tick(100), WatermarkUpdate::Advance(4_999));
        assert_eq!(w.tick(500), WatermarkUpdate::Idle);
        assert_eq!(w.tick(600), WatermarkUpdate::None);
        assert_eq!(w.observe(1, 9_000, 700), WatermarkUpdate::Advance(8_999));
    }

    #[test]
    fn inputs_combine_to_the_minimum_once_all_senders_report() {
        let (a, b) = (SenderId::new(0, 0), SenderId::new(0, 1));
        let mut inputs = InputWatermarks::new(2);
        assert_eq!(inputs.advance(a, 100), None);
        assert_eq!(inputs.advance(b, 50), Some(50));
        assert_eq!(inputs.advance(b, 40), None, "never goes back");
        assert_eq!(inputs.advance(a, 200), None);
        assert_eq!(inputs.advance(b, 300), Some(200));
        assert_eq!(inputs.idle(a), Some(300));
        assert_eq!(inputs.end(b), Some(WATERMARK_MAX));
    }
}
