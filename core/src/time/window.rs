//! Window types and their arithmetic: which windows a timestamp falls into, the panes a hop or
//! cumulate window is built from, and when a window may fire or be forgotten.
//!
//! Windows are half-open `[start, end)` in milliseconds, aligned to the epoch. A window fires
//! when the watermark reaches `end - 1` (its last millisecond) and keeps its state until the
//! watermark passes `end - 1 + allowed_lateness`. Pure: no clocks, no IO.

/// The shape of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumbling {
        /// Window length.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `slide_ms`.
    Hop {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        slide_ms: i64,
    },
    /// Windows growing by `step_ms` from the start of each `size_ms` period: `[s, s + step)`,
    /// `[s, s + 2 step)`, ... `[s, s + size)`, `s` a multiple of `size_ms` (a multiple of
    /// `step_ms`). Flink SQL's `CUMULATE`.
    Cumulate {
        /// The growth between two windows of a period.
        step_ms: i64,
        /// The period, and the largest window.
        size_ms: i64,
    },
    /// Per key, rows closer than `gap_ms` to each other share a window.
    Session {
        /// Inactivity that closes a session.
        gap_ms: i64,
    },
}

/// Which clock a window follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// The rows' event time, advanced by watermarks.
    Event,
    /// The wall clock of the core running the window.
    Processing,
}

/// A checked window definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Its shape.
    pub kind: WindowKind,
    /// Its clock.
    pub time: TimeDomain,
    /// How long after firing a window still accepts late rows (and fires again).
    pub allowed_lateness_ms: i64,
    /// The operator index of the side output late rows go to, if the user named one.
    pub late_output: Option<usize>,
}

/// Where a row's time comes from: a timestamp (or epoch-millisecond i64) field plus a fixed
/// offset (window results carry `window_end - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAttr {
    /// Field index in the row.
    pub field: usize,
    /// Milliseconds added to the field's value.
    pub offset_ms: i64,
}

impl WindowKind {
    /// The pane length: the unit of state. A row updates exactly one pane.
    pub fn pane_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms } => size_ms,
            WindowKind::Hop { size_ms, slide_ms } => gcd(size_ms, slide_ms),
            WindowKind::Cumulate { step_ms, .. } => step_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// Start of the pane holding `ts`.
    pub fn pane_start(&self, ts: i64) -> i64 {
        align_down(ts, self.pane_ms())
    }

    /// The windows (as `(start, end)`) containing `ts`, earliest first. Sessions have none:
    /// they depend on the other rows of the key.
    pub fn windows_of(&self, ts: i64) -> Box<dyn Iterator<Item = (i64, i64)>> {
        let (size, slide) = match *self {
            WindowKind::Tumbling { size_ms } => (size_ms, size_ms),
            WindowKind::Hop { size_ms, slide_ms } => (size_ms, slide_ms),
            WindowKind::Cumulate { step_ms, size_ms } => {
                let start = align_down(ts, size_ms);
                let first = align_down(ts, step_ms).saturating_add(step_ms);
                let last = start.saturating_add(size_ms);
                let ends = (0..)
                    .map(move |i: i64| first.saturating_add(i.saturating_mul(step_ms)))
                    .take_while(move |end| *end <= last);
                return Box::new(ends.map(move |end| (start, end)));
            }
            WindowKind::Session { .. } => (0, 1),
        };
        let last_start = align_down(ts, slide);
        let count = if size == 0 {
            0
        } else {
            (size + slide - 1) / slide
        };
        Box::new(
            (0..count)
                .rev()
                .map(move |i| last_start.saturating_sub(i * slide))
                .filter(move |start| start.saturating_add(size) > ts)
                .map(move |start| (start, start.saturating_add(size))),
        )
    }

    /// The earliest window end after `after` (sessions: `after + 1`).
    pub fn first_end_after(&self, after: i64) -> i64 {
        match *self {
            WindowKind::Cumulate { step_ms, .. } => {
                align_down(after, step_ms).saturating_add(step_ms)
            }
            WindowKind::Session { .. } => after.saturating_add(1),
            _ => {
                let (size, slide) = (self.size_ms(), self.slide_ms());
                align_down(after.saturating_sub(size), slide)
                    .saturating_add(slide)
                    .saturating_add(size)
            }
        }
    }

    /// The start of the window ending at `end` (tumbling, hop and cumulate).
    pub fn start_of(&self, end: i64) -> i64 {
        match *self {
            WindowKind::Cumulate { size_ms, .. } => align_down(end.saturating_sub(1), size_ms),
            _ => end.saturating_sub(self.size_ms()),
        }
    }

    /// End of the latest window containing `ts` (for sessions: of the session `ts` opens).
    pub fn last_end_of(&self, ts: i64) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms } => align_down(ts, size_ms).saturating_add(size_ms),
            WindowKind::Hop { size_ms, slide_ms } => {
                align_down(ts, slide_ms).saturating_add(size_ms)
            }
            WindowKind::Cumulate { size_ms, .. } => align_down(ts, size_ms).saturating_add(size_ms),
            WindowKind::Session { gap_ms } => ts.saturating_add(gap_ms),
        }
    }

    /// End of the last window that reads the pane starting at `pane_start`.
    pub fn last_end_of_pane(&self, pane_start: i64) -> i64 {
        let pane_last_ms = pane_start.saturating_add(self.pane_ms() - 1);
        self.last_end_of(pane_last_ms)
    }

    /// The window length (for cumulate windows, the largest; for sessions, the gap).
    pub fn size_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms }
            | WindowKind::Hop { size_ms, .. }
            | WindowKind::Cumulate { size_ms, .. } => size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// The distance between window ends (tumbling, hop and cumulate).
    pub fn slide_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms } => size_ms,
            WindowKind::Hop { slide_ms, .. } => slide_ms,
            WindowKind::Cumulate { step_ms, .. } => step_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }
}

/// Whether a window ending at `end` fires at watermark `watermark`.
pub fn fires(end: i64, watermark: i64) -> bool {
    end.saturating_sub(1) <= watermark
}

/// Whether a window ending at `end` is past its allowed lateness at `watermark` (its state
/// can go, and rows for it are late).
pub fn expired(end: i64, allowed_lateness_ms: i64, watermark: i64) -> bool {
    end.saturating_sub(1).saturating_add(allowed_lateness_ms) <= watermark
}

/// `ts` rounded down to a multiple of `unit` (also for negative `ts`).
pub fn align_down(ts: i64, unit: i64) -> i64 {
    if unit <= 1 {
        return ts;
    }
    ts - ts.rem_euclid(unit)
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_windows_of_a_timestamp_are_the_size_over_slide_windows_covering_it() {
        let hop = WindowKind::Hop {
            size_ms: 10_000,
            slide_ms: 2_000,
        };
        let windows: Vec<_> = hop.windows_of(12_500).collect();
        assert_eq!(
            windows,
            [
                (4_000, 14_000),
                (6_000, 16_000),
                (8_000, 18_000),
                (10_000, 20_000),
                (12_000, 22_000)
            ]
        );
        assert_eq!(hop.pane_ms(), 2_000);
        assert_eq!(hop.pane_start(12_500), 12_000);
        assert_eq!(hop.last_end_of(12_500), 22_000);
        assert_eq!(hop.last_end_of_pane(12_000), 22_000);
    }

    #[test]
    fn cumulate_windows_grow_by_step_within_their_period() {
        let cumulate = WindowKind::Cumulate {
            step_ms: 2_000,
            size_ms: 10_000,
        };
        let windows: Vec<(i64, i64)> = cumulate.windows_of(14_500).collect();
        assert_eq!(
            windows,
            [(10_000, 16_000), (10_000, 18_000), (10_000, 20_000)]
        );
        assert_eq!(cumulate.windows_of(-1).count(), 1, "[-10 s, 0) only");
        assert_eq!(cumulate.pane_ms(), 2_000);
        assert_eq!(cumulate.last_end_of(14_500), 20_000);
        assert_eq!(cumulate.last_end_of_pane(12_000), 20_000);
        assert_eq!(cumulate.first_end_after(14_000), 16_000);
        assert_eq!(cumulate.first_end_after(19_999), 20_000);
        assert_eq!(cumulate.start_of(20_000), 10_000);
        assert_eq!(cumulate.start_of(12_000), 10_000);
    }

    #[test]
    fn uneven_hops_use_the_gcd_as_pane() {
        let hop = WindowKind::Hop {
            size_ms: 10,
            slide_ms: 4,
        };
        assert_eq!(hop.pane_ms(), 2);
        let windows: Vec<_> = hop.windows_of(9).collect();
        assert_eq!(windows, [(0, 10), (4, 14), (8, 18)]);
    }

    #[test]
    fn tumbling_windows_hold_one_window_and_align_negative_times() {
        let tumble = WindowKind::Tumbling { size_ms: 1_000 };
        assert_eq!(tumble.windows_of(-1).collect::<Vec<_>>(), [(-1_000, 0)]);
        assert_eq!(tumble.windows_of(0).collect::<Vec<_>>(), [(0, 1_000)]);
        assert!(fires(1_000, 999));
        assert!(!fires(1_000, 998));
        assert!(expired(1_000, 500, 1_499));
        assert!(!expired(1_000, 500, 1_498));
    }
}
