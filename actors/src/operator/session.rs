//! Session windows: per key, rows at most `gap` apart share a window `[first, last + gap)`
//! (windows that touch merge, as in Flink); a row that bridges two sessions merges them.
//!
//! Each key keeps its open sessions and one armed timer (in a map ordered by time) at or before
//! the earliest time one of them has work: its end, or its expiry once fired. A row that extends
//! a session does not move the timer: when it fires early, the key re-checks its sessions and
//! arms the next time. So the timer map changes once per session, not once per row.

use std::collections::BTreeMap;

use wire_core::frontend::expr::Expr;
use wire_core::frontend::plan::AggregatePlan;
use wire_core::operator::agg::AggCall;
use wire_core::time::watermark::WATERMARK_MIN;
use wire_core::time::window::{expired, fires, WindowKind, WindowPlan};
use wire_core::{ArchivedRow, Batch};

use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;

use super::aggregate::{new_accs, push_result};
use super::table::key_hash;
use super::{eval_into, open_section, Clock, GroupTable, Output, Sections, Stateful, RECORD_GROUP};

type Accs = Box<[wire_core::operator::agg::Acc]>;

/// A session-window aggregate.
pub(crate) struct SessionAggregate {
    keys: Vec<Expr>,
    aggs: Vec<AggCall>,
    gap_ms: i64,
    lateness_ms: i64,
    clock: Clock,
    groups: GroupTable<Sessions>,
    /// Time → groups armed then. A group may also sit, stale, under a later time it was armed
    /// at before: firing it there is a re-check that finds nothing.
    timers: BTreeMap<i64, Vec<u32>>,
    watermark: i64,
}

/// A key's open sessions.
struct Sessions {
    list: Vec<Session>,
    /// The time of the group's pending timer (`i64::MAX` for none): never later than the
    /// [`timer_of`] of any session in `list`.
    armed: i64,
}

impl Sessions {
    fn new() -> Sessions {
        Sessions {
            list: Vec::new(),
            armed: i64::MAX,
        }
    }
}

struct Session {
    start: i64,
    end: i64,
    accs: Accs,
    fired: bool,
}

impl SessionAggregate {
    pub(crate) fn new(plan: &AggregatePlan, window: &WindowPlan) -> SessionAggregate {
        let gap_ms = match window.kind {
            WindowKind::Session { gap_ms } => gap_ms,
            other => other.size_ms(),
        };
        SessionAggregate {
            keys: plan.keys.clone(),
            aggs: plan.aggregates.clone(),
            gap_ms,
            lateness_ms: window.allowed_lateness_ms,
            clock: Clock::new(window.time, plan.time),
            groups: GroupTable::default(),
            timers: BTreeMap::new(),
            watermark: WATERMARK_MIN,
        }
    }

    /// Adds a row at `ts` to its key's sessions; `false` if it is late for every session.
    fn add_row(
        &mut self,
        row: &ArchivedRow,
        ts: i64,
        hash: u64,
        key: &[wire_core::frontend::expr::Datum<'_>],
    ) -> bool {
        let end = ts.saturating_add(self.gap_ms);
        let (id, _) = self.groups.find_or_insert(hash, key, Sessions::new);
        let Some(group) = self.groups.get_mut(id) else {
            return false;
        };
        let sessions = &mut group.value.list;
        // Sessions that touch merge, as Flink's `TimeWindow.intersects` decides.
        let touches = |s: &Session| s.start <= end && ts <= s.end;
        let mut overlapping = sessions.iter().enumerate().filter(|(_, s)| touches(s));
        let first = overlapping.next().map(|(index, _)| index);
        let more = overlapping.next().is_some();
        let index = match first {
            None if expired(end, self.lateness_ms, self.watermark) => {
                if sessions.is_empty() {
                    self.groups.remove(id);
                }
                return false;
            }
            // The row extends one session it does not precede: the same fold as merging a
            // session of the row after it.
            Some(index) if !more && sessions[index].start <= ts => {
                let session = &mut sessions[index];
                session.end = session.end.max(end);
                session.fired = false;
                update(&self.aggs, &mut session.accs, row);
                index
            }
            _ => {
                let mut fresh = Session {
                    start: ts,
                    end,
                    accs: new_accs(&self.aggs),
                    fired: false,
                };
                update(&self.aggs, &mut fresh.accs, row);
                if first.is_some() {
                    fresh = merge_touching(&self.aggs, sessions, fresh, touches);
                }
                sessions.push(fresh);
                sessions.len() - 1
            }
        };
        let time = sessions[index].end;
        self.arm(id, time);
        true
    }

    /// Makes sure group `id` has a timer at or before `time`.
    fn arm(&mut self, id: u32, time: i64) {
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        if time < group.value.armed {
            group.value.armed = time;
            self.timers.entry(time).or_default().push(id);
        }
    }

    fn add_rows(
        &mut self,
        view: &wire_core::BatchView<'_>,
        keys: &[Expr],
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let mut datums = Vec::with_capacity(keys.len());
        for index in 0..view.row_count() {
            let row = view.row(index);
            let Some(ts) = self.clock.time_of(row, now_ms) else {
                out.push_late(view, index, None)?;
                continue;
            };
            eval_into(keys, row, &mut datums);
            let hash = key_hash(&datums);
            if !self.add_row(row, ts, hash, &datums) {
                out.push_late(view, index, Some(ts))?;
            }
        }
        Ok(())
    }

    fn fire(&mut self, out: &mut Output) -> Result<(), wire_core::Error> {
        let watermark = self.watermark;
        while let Some(entry) = self.timers.first_entry() {
            if !fires(*entry.key(), watermark) {
                break;
            }
            let (time, mut ids) = entry.remove_entry();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                self.fire_group(id, time, out)?;
            }
        }
        Ok(())
    }

    /// Fires group `id`'s sessions that the watermark has passed, drops the expired ones and
    /// arms the group's next timer. `time` is the timer that fired (perhaps a stale one).
    fn fire_group(&mut self, id: u32, time: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        let (watermark, lateness) = (self.watermark, self.lateness_ms);
        let Some(group) = self.groups.get_mut(id) else {
            return Ok(());
        };
        for session in group.value.list.iter_mut() {
            if !session.fired && fires(session.end, watermark) {
                let window = Some((session.start, session.end));
                push_result(out, &group.key, window, &self.aggs, &session.accs, None)?;
                session.fired = true;
            }
        }
        group
            .value
            .list
            .retain(|s| !expired(s.end, lateness, watermark));
        if group.value.list.is_empty() {
            self.groups.remove(id);
            return Ok(());
        }
        // Timers up to `time` have all been taken from the map: an armed time among them is
        // gone, and a later one is still pending.
        if group.value.armed <= time {
            group.value.armed = i64::MAX;
        }
        let next = group.value.list.iter().map(|s| timer_of(s, lateness)).min();
        if let Some(next) = next {
            self.arm(id, next);
        }
        Ok(())
    }
}

/// The time at which the watermark next has work for `session`: its end while it has not
/// fired, its expiry after.
fn timer_of(session: &Session, lateness_ms: i64) -> i64 {
    if session.fired {
        expiry_timer(session.end, lateness_ms)
    } else {
        session.end
    }
}

/// When a fired session ending at `end` expires: the timer that drops it.
fn expiry_timer(end: i64, lateness_ms: i64) -> i64 {
    end.saturating_sub(1)
        .saturating_add(lateness_ms)
        .saturating_add(1)
}

fn update(aggs: &[AggCall], accs: &mut Accs, row: &ArchivedRow) {
    for (agg, acc) in aggs.iter().zip(accs.iter_mut()) {
        agg.update(acc, row);
    }
}

/// Takes the sessions that `touches` out of `sessions` and folds them with `fresh` into one,
/// in order of start (ties: the older sessions first).
fn merge_touching(
    aggs: &[AggCall],
    sessions: &mut Vec<Session>,
    fresh: Session,
    touches: impl Fn(&Session) -> bool,
) -> Session {
    let mut merging: Vec<Session> = Vec::new();
    let mut index = 0;
    while index < sessions.len() {
        if touches(&sessions[index]) {
            merging.push(sessions.swap_remove(index));
        } else {
            index += 1;
        }
    }
    merging.push(fresh);
    merging.sort_by_key(|s| s.start);
    let mut iter = merging.into_iter();
    let Some(mut merged) = iter.next() else {
        unreachable!("at least the new row's session");
    };
    for next in iter {
        merged.start = merged.start.min(next.start);
        merged.end = merged.end.max(next.end);
        for ((agg, acc), from) in aggs
            .iter()
            .zip(merged.accs.iter_mut())
            .zip(next.accs.iter())
        {
            agg.merge(acc, from);
        }
    }
    merged.fired = false;
    merged
}

impl Stateful for SessionAggregate {
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let view = batch.view();
        let keys = std::mem::take(&mut self.keys);
        let result = self.add_rows(&view, &keys, now_ms, out);
        self.keys = keys;
        result
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        if matches!(self.clock, Clock::Processing) && watermark != i64::MAX {
            return Ok(());
        }
        self.watermark = self.watermark.max(watermark);
        self.fire(out)
    }

    fn next_timer(&self) -> Option<i64> {
        match self.clock {
            Clock::Processing => self.timers.keys().next().copied(),
            Clock::Event(_) => None,
        }
    }

    fn on_timer(&mut self, now_ms: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        self.watermark = self.watermark.max(now_ms.saturating_sub(1));
        self.fire(out)
    }

    fn groups(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups.footprint_bytes()
    }

    /// Header: the watermark. One group record per key: the key, then its sessions (start,
    /// end, fired, accumulators). The timers are rebuilt from the sessions.
    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut header = Vec::new();
        snapshot::put_i64(&mut header, self.watermark);
        let mut sections = Sections::new(max_parallelism, header);
        for (_, group) in self.groups.iter() {
            let out = sections.of_hash(group.hash);
            out.push(RECORD_GROUP);
            snapshot::put_row(out, &group.key);
            snapshot::put_len(out, group.value.list.len());
            for session in &group.value.list {
                snapshot::put_i64(out, session.start);
                snapshot::put_i64(out, session.end);
                out.push(u8::from(session.fired));
                session
                    .accs
                    .iter()
                    .for_each(|acc| snapshot::put_acc(out, acc));
            }
        }
        Ok(sections.finish())
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        self.watermark = self.watermark.max(reader.i64("watermark")?);
        while !reader.is_empty() {
            let at = reader.offset();
            match reader.u8("record")? {
                RECORD_GROUP => {}
                tag => return Err(snapshot::corrupt(at, format!("unknown record {tag}"))),
            }
            let key = reader.row()?;
            let count = reader.count("session")?;
            let mut sessions = Vec::with_capacity(count);
            for _ in 0..count {
                let start = reader.i64("session start")?;
                let end = reader.i64("session end")?;
                let fired_at = reader.offset();
                let fired = match reader.u8("fired")? {
                    0 => false,
                    1 => true,
                    other => {
                        let reason = format!("fired byte {other} is not 0 or 1");
                        return Err(snapshot::corrupt(fired_at, reason));
                    }
                };
                let accs: Accs = reader.accs(&self.aggs)?;
                sessions.push(Session {
                    start,
                    end,
                    accs,
                    fired,
                });
            }
            if sessions.is_empty() {
                continue;
            }
            let next = sessions.iter().map(|s| timer_of(s, self.lateness_ms)).min();
            let list = Sessions {
                list: sessions,
                armed: i64::MAX,
            };
            let id = self.groups.insert_owned(key, list);
            if let Some(next) = next {
                self.arm(id, next);
            }
        }
        Ok(())
    }
}
