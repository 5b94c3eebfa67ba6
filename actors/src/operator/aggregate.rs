//! Group aggregation: over tumbling, hop and cumulate windows (built from panes), and
//! unbounded with a changelog of updates.
//!
//! A hop window of `size` sliding by `slide` is cut into panes of `gcd(size, slide)`: a row
//! updates one pane's accumulators, and a window that fires merges its `size / pane` panes, so
//! the cost per row does not grow with the number of overlapping windows. State is key-major:
//! one hash table of keys, each holding its few live panes in time order, so a row costs one
//! lookup and a key is stored once however many windows it is in. A cumulate window of `size`
//! growing by `step` has panes of `step`: each step boundary emits, per key, the merge of the
//! panes since the period's start, and a key holds at most `size / step` panes.
//!
//! Firing does not merge every pane of a window again. Each key keeps the merge of the window
//! it last emitted (its *slide*); the next window adds the panes that entered and, for a hop
//! window, takes out the panes that left. Taking out needs aggregates that unmerge exactly
//! (counts, integer sums and averages); a hop window with any other aggregate merges its panes
//! on every firing. So a firing costs a few pane merges per key, not `size / slide` of them.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::AggregatePlan;
use wire_core::operator::agg::{Acc, AggCall};
use wire_core::time::watermark::{WATERMARK_MAX, WATERMARK_MIN};
use wire_core::time::window::{expired, fires, WindowKind, WindowPlan};
use wire_core::{Batch, Value, ValueRef};

use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;

use super::flat::{put_at, AccColumn, Bits, FlatGroups};
use super::table::{key_hash, Key};
use super::{
    eval_into, open_section, Clock, GroupTable, Output, Sections, SnapshotSize, Stateful,
    RECORD_DELETE, RECORD_GROUP, RECORD_REFIRE, RECORD_UPSERT,
};

type Accs = Box<[Acc]>;

/// A tumbling, hop or cumulate window aggregate (event or processing time).
pub(crate) struct WindowAggregate {
    keys: Vec<Expr>,
    aggs: Vec<AggCall>,
    kind: WindowKind,
    lateness_ms: i64,
    clock: Clock,
    /// Keys → their live panes and slide.
    groups: GroupTable<KeyPanes>,
    /// Whether keys keep a slide: windows of more than one pane, and either cumulate windows
    /// (which only add panes) or aggregates that unmerge exactly.
    slides: bool,
    /// Whether every aggregate unmerges exactly, so a slide can take panes out.
    unmerges: bool,
    /// Pane start → how many keys have that pane (to find the next window to fire).
    occupied: BTreeMap<i64, u32>,
    watermark: i64,
    /// Every window ending at or before this has fired.
    fired_end: i64,
    /// Window end → hashes of keys a late row updated after the window fired.
    refire: BTreeMap<i64, Vec<u64>>,
}

/// A key's live panes (start, accumulators), oldest first, and its slide.
#[derive(Default)]
struct KeyPanes {
    panes: Vec<(i64, Accs)>,
    slide: Option<Slide>,
}

/// The merge of a key's panes that start in `[start, end)`: the window it last emitted, less
/// the panes purged since.
struct Slide {
    start: i64,
    end: i64,
    /// How many of the key's panes start in `[start, end)`, so the panes that enter the next
    /// window are found without a search.
    panes: usize,
    accs: Accs,
}

impl Slide {
    /// Moves the slide to window `[start, end)`, which starts inside it and ends at or after
    /// it: takes out the panes that left (found from the front of the key's `panes`) and adds
    /// those that entered (found from the slide's end), a few panes touched however many the
    /// window holds.
    fn advance(&mut self, aggs: &[AggCall], panes: &[(i64, Accs)], start: i64, end: i64) {
        let first = panes.iter().take_while(|(p, _)| *p < self.start).count();
        let entered = first + self.panes;
        debug_assert!(panes[first..entered]
            .iter()
            .all(|(p, _)| self.start <= *p && *p < self.end));
        debug_assert!(panes.get(entered).is_none_or(|(p, _)| *p >= self.end));
        let left = panes[first..entered]
            .iter()
            .take_while(|(p, _)| *p < start)
            .count();
        for (_, accs) in &panes[first..first + left] {
            unmerge(aggs, &mut self.accs, accs);
        }
        let to = entered
            + panes[entered..]
                .iter()
                .take_while(|(p, _)| *p < end)
                .count();
        for (_, accs) in &panes[entered..to] {
            merge(aggs, &mut self.accs, accs);
        }
        self.panes = to - first - left;
        (self.start, self.end) = (start, end);
    }
}

impl WindowAggregate {
    pub(crate) fn new(plan: &AggregatePlan, window: &WindowPlan) -> WindowAggregate {
        let kind = window.kind;
        let unmerges = plan.aggregates.iter().all(AggCall::unmerges_exactly);
        let slides = kind.size_ms() > kind.pane_ms()
            && match kind {
                WindowKind::Cumulate { .. } => true,
                WindowKind::Hop { .. } => unmerges,
                WindowKind::Tumbling { .. } | WindowKind::Session { .. } => false,
            };
        WindowAggregate {
            slides,
            unmerges,
            keys: plan.keys.clone(),
            aggs: plan.aggregates.clone(),
            kind: window.kind,
            lateness_ms: window.allowed_lateness_ms,
            clock: Clock::new(window.time, plan.time),
            groups: GroupTable::default(),
            occupied: BTreeMap::new(),
            watermark: WATERMARK_MIN,
            fired_end: WATERMARK_MIN,
            refire: BTreeMap::new(),
        }
    }

    fn add_row(&mut self, row: &wire_core::ArchivedRow, ts: i64, datums: &[Datum<'_>]) {
        let hash = key_hash(datums);
        let pane = self.kind.pane_start(ts);
        let (id, _) = self.groups.find_or_insert(hash, datums, KeyPanes::default);
        let Some(group) = self.groups.get_mut(id) else {
            return;
        };
        let panes = &mut group.value.panes;
        // A row behind the last emitted window's end, in a pane a later window still reads.
        let mut held = group
            .value
            .slide
            .as_mut()
            .filter(|held| held.start <= pane && pane < held.end);
        // Rows mostly land in the newest pane; search from the back.
        let slot = match panes.iter().rposition(|(start, _)| *start <= pane) {
            Some(at) if panes[at].0 == pane => at,
            found => {
                let at = found.map_or(0, |at| at + 1);
                panes.insert(at, (pane, new_accs(&self.aggs)));
                *self.occupied.entry(pane).or_default() += 1;
                if let Some(held) = held.as_mut() {
                    held.panes += 1;
                }
                at
            }
        };
        for (agg, acc) in self.aggs.iter().zip(panes[slot].1.iter_mut()) {
            agg.update(acc, row);
        }
        if let Some(held) = held {
            for (agg, acc) in self.aggs.iter().zip(held.accs.iter_mut()) {
                agg.update(acc, row);
            }
        }
        if self.lateness_ms > 0 {
            for (_, end) in self.kind.windows_of(ts) {
                if end <= self.fired_end && !expired(end, self.lateness_ms, self.watermark) {
                    self.refire.entry(end).or_default().push(hash);
                }
            }
        }
    }

    /// Fires every window `watermark` closes, re-fires late-updated ones, and drops panes no
    /// open window reads.
    fn advance(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        self.watermark = self.watermark.max(watermark);
        let mut merged = new_accs(&self.aggs);
        while let Some(end) = self.next_end() {
            if !fires(end, self.watermark) {
                break;
            }
            self.fire(end, &mut merged, out)?;
            self.fired_end = end;
        }
        let refire = std::mem::take(&mut self.refire);
        for (end, mut hashes) in refire {
            hashes.sort_unstable();
            hashes.dedup();
            self.emit_window(end, Some(&hashes), &mut merged, out)?;
        }
        self.purge();
        Ok(())
    }

    /// Drops the panes no open window reads, and keys left without panes.
    fn purge(&mut self) {
        let (kind, lateness, watermark) = (self.kind, self.lateness_ms, self.watermark);
        let dead = |pane: i64| expired(kind.last_end_of_pane(pane), lateness, watermark);
        let Some((&oldest, _)) = self.occupied.first_key_value() else {
            return;
        };
        if !dead(oldest) {
            return;
        }
        let mut empty = Vec::new();
        let (aggs, unmerges) = (&self.aggs, self.unmerges);
        for (id, group) in self.groups.iter_mut() {
            let KeyPanes { panes, slide } = &mut group.value;
            // Panes are in time order, so the dead ones come first.
            let gone = panes.iter().take_while(|(pane, _)| dead(*pane)).count();
            let Some((last_gone, _)) = gone.checked_sub(1).map(|last| &panes[last]) else {
                continue;
            };
            if let Some(held) = slide.as_mut().filter(|held| held.start <= *last_gone) {
                if unmerges {
                    for (pane, accs) in &panes[..gone] {
                        if held.start <= *pane && *pane < held.end {
                            unmerge(aggs, &mut held.accs, accs);
                            held.panes -= 1;
                        }
                    }
                    held.start = last_gone.saturating_add(1);
                } else {
                    *slide = None;
                }
            }
            panes.drain(..gone);
            if panes.is_empty() {
                empty.push(id);
            }
        }
        for id in empty {
            self.groups.remove(id);
        }
        self.occupied.retain(|pane, _| !dead(*pane));
    }

    /// The end of the earliest window that has not fired and holds data.
    fn next_end(&self) -> Option<i64> {
        for pane in self.occupied.keys() {
            let after = (*pane).max(self.fired_end);
            let end = self.kind.first_end_after(after);
            if end <= self.kind.last_end_of_pane(*pane) {
                return Some(end);
            }
        }
        None
    }

    /// Emits window `[start, end)` for every key with rows in it, the first time: from each
    /// key's slide when it keeps one, else by merging the window's panes. `merged` is scratch
    /// space for merging a key's panes.
    fn fire(
        &mut self,
        end: i64,
        merged: &mut Accs,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        if !self.slides {
            return self.emit_window(end, None, merged, out);
        }
        let start = self.kind.start_of(end);
        let window = Some((start, end));
        let (aggs, unmerges) = (&self.aggs, self.unmerges);
        for (_, group) in self.groups.iter_mut() {
            let KeyPanes { panes, slide } = &mut group.value;
            let held = match slide {
                // Windows fire in time order: from the last one, take out the panes that left
                // and add those that entered.
                Some(held)
                    if held.start <= start
                        && start < held.end
                        && held.end <= end
                        && (unmerges || held.start == start) =>
                {
                    held.advance(aggs, panes, start, end);
                    if held.panes == 0 {
                        continue;
                    }
                    held
                }
                _ => {
                    let (from, to) = inside(panes, start, end);
                    let Some(((_, first), rest)) = panes[from..to].split_first() else {
                        continue;
                    };
                    let mut accs = first.clone();
                    for (_, pane) in rest {
                        merge(aggs, &mut accs, pane);
                    }
                    let panes = to - from;
                    slide.insert(Slide {
                        start,
                        end,
                        panes,
                        accs,
                    })
                }
            };
            push_result(out, &group.key, window, aggs, &held.accs, None)?;
        }
        Ok(())
    }

    /// Emits window `[start, end)`, for every key or only keys hashing into `only`, by merging
    /// its panes; `merged` is scratch space for that.
    fn emit_window(
        &self,
        end: i64,
        only: Option<&[u64]>,
        merged: &mut Accs,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let start = self.kind.start_of(end);
        let window = Some((start, end));
        for (_, group) in self.groups.iter() {
            if only.is_some_and(|hashes| hashes.binary_search(&group.hash).is_err()) {
                continue;
            }
            let panes = &group.value.panes;
            let (from, to) = inside(panes, start, end);
            let Some(((_, first), rest)) = panes[from..to].split_first() else {
                continue;
            };
            if rest.is_empty() {
                push_result(out, &group.key, window, &self.aggs, first, None)?;
                continue;
            }
            merged.clone_from_slice(first);
            for (_, accs) in rest {
                merge(&self.aggs, merged, accs);
            }
            push_result(out, &group.key, window, &self.aggs, merged, None)?;
        }
        Ok(())
    }
}

/// The index range of the panes starting in `[start, end)`.
fn inside(panes: &[(i64, Accs)], start: i64, end: i64) -> (usize, usize) {
    let from = panes.partition_point(|(pane, _)| *pane < start);
    let to = from + panes[from..].partition_point(|(pane, _)| *pane < end);
    (from, to)
}

/// Folds a later pane's accumulators into `into`.
fn merge(aggs: &[AggCall], into: &mut [Acc], from: &[Acc]) {
    for ((agg, into), from) in aggs.iter().zip(into.iter_mut()).zip(from) {
        agg.merge(into, from);
    }
}

/// Takes a pane's accumulators back out of `into` (aggregates that unmerge exactly).
fn unmerge(aggs: &[AggCall], into: &mut [Acc], from: &[Acc]) {
    for ((agg, into), from) in aggs.iter().zip(into.iter_mut()).zip(from) {
        agg.unmerge(into, from);
    }
}

impl Stateful for WindowAggregate {
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let view = batch.view();
        let keys = std::mem::take(&mut self.keys);
        let mut datums = Vec::with_capacity(keys.len());
        let mut result = Ok(());
        for index in 0..view.row_count() {
            let row = view.row(index);
            let ts = match self.clock.time_of(row, now_ms) {
                Some(ts)
                    if !expired(self.kind.last_end_of(ts), self.lateness_ms, self.watermark) =>
                {
                    ts
                }
                time => {
                    result = out.push_late(&view, index, time);
                    if result.is_err() {
                        break;
                    }
                    continue;
                }
            };
            eval_into(&keys, row, &mut datums);
            self.add_row(row, ts, &datums);
        }
        self.keys = keys;
        result
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        if matches!(self.clock, Clock::Processing) && watermark != WATERMARK_MAX {
            return Ok(()); // Processing-time windows follow the wall clock, not watermarks.
        }
        self.advance(watermark, out)
    }

    fn next_timer(&self) -> Option<i64> {
        match self.clock {
            Clock::Processing => self.next_end(),
            Clock::Event(_) => None,
        }
    }

    fn on_timer(&mut self, now_ms: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        // At wall-clock time `now`, every millisecond before it is complete.
        self.advance(now_ms.saturating_sub(1), out)
    }

    fn groups(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups.footprint_bytes()
    }

    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut header = Vec::new();
        snapshot::put_i64(&mut header, self.watermark);
        snapshot::put_i64(&mut header, self.fired_end);
        let mut sections = Sections::new(max_parallelism, header);
        for (_, group) in self.groups.iter() {
            let out = sections.of_hash(group.hash);
            out.push(RECORD_GROUP);
            snapshot::put_row(out, &group.key);
            snapshot::put_len(out, group.value.panes.len());
            for (start, accs) in &group.value.panes {
                snapshot::put_i64(out, *start);
                accs.iter().for_each(|acc| snapshot::put_acc(out, acc));
            }
        }
        for (end, hashes) in &self.refire {
            for hash in hashes {
                let out = sections.of_hash(*hash);
                out.push(RECORD_REFIRE);
                snapshot::put_i64(out, *end);
                snapshot::put_u64(out, *hash);
            }
        }
        Ok(sections.finish())
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        self.watermark = self.watermark.max(reader.i64("watermark")?);
        self.fired_end = self.fired_end.max(reader.i64("fired window end")?);
        while !reader.is_empty() {
            let at = reader.offset();
            match reader.u8("record")? {
                RECORD_GROUP => {
                    let key = reader.row()?;
                    let count = reader.count("pane")?;
                    let mut panes = Vec::with_capacity(count);
                    for _ in 0..count {
                        let start = reader.i64("pane start")?;
                        let accs: Accs = reader.accs(&self.aggs)?;
                        *self.occupied.entry(start).or_default() += 1;
                        panes.push((start, accs));
                    }
                    let slide = None; // Rebuilt by the next window to fire.
                    self.groups.insert_owned(key, KeyPanes { panes, slide });
                }
                RECORD_REFIRE => {
                    let end = reader.i64("window end")?;
                    let hash = reader.u64("key hash")?;
                    self.refire.entry(end).or_default().push(hash);
                }
                tag => return Err(snapshot::corrupt(at, format!("unknown record {tag}"))),
            }
        }
        Ok(())
    }
}

/// An aggregate without a window: a changelog with one update per changed key per batch.
/// Over a changelog input, `-U`/`-D` rows retract what their `+I`/`+U` added, and a group
/// whose rows are all retracted is deleted (`-D`).
pub(crate) struct UnboundedAggregate {
    keys: Vec<Expr>,
    aggs: Vec<AggCall>,
    retracting: bool,
    groups: FlatGroups,
    /// One column per aggregate call, by group id.
    accs: Vec<AccColumn>,
    /// Rows added minus rows retracted, by group id: kept over a changelog only (over an
    /// append-only input every group has rows and lives on).
    rows: Option<Vec<i64>>,
    /// Groups whose result was emitted (so the next change retracts it).
    emitted: Bits,
    /// Groups changed by the current batch (in `touched`).
    touched_bits: Bits,
    /// Groups changed by the current batch, with their result before it (if emitted).
    touched: Vec<(u32, Option<Vec<Value>>)>,
    /// What changed since the last snapshot, once checkpoints are on.
    changes: Option<Changes>,
    /// Bytes of snapshot sections still to restore, until the first is decoded.
    restoring: usize,
    /// The last whole-state snapshot's size.
    snapshot_size: SnapshotSize,
}

/// The groups an [`UnboundedAggregate`] changed since its last snapshot.
#[derive(Default)]
struct Changes {
    /// Group ids changed (or added) since, each once (a removed group's id stays listed, and
    /// the group that reuses it is written in its place).
    changed: Vec<u32>,
    /// The ids in `changed`.
    dirty: Bits,
    /// Keys deleted since, in order, with their hashes.
    deleted: Vec<(u64, Key)>,
}

impl UnboundedAggregate {
    pub(crate) fn new(plan: &AggregatePlan) -> UnboundedAggregate {
        UnboundedAggregate {
            keys: plan.keys.clone(),
            aggs: plan.aggregates.clone(),
            retracting: plan.retracting,
            groups: FlatGroups::default(),
            accs: plan
                .aggregates
                .iter()
                .map(|agg| AccColumn::for_acc(&agg.new_acc()))
                .collect(),
            rows: plan.retracting.then(Vec::new),
            emitted: Bits::default(),
            touched_bits: Bits::default(),
            touched: Vec::new(),
            changes: None,
            restoring: 0,
            snapshot_size: SnapshotSize::default(),
        }
    }

    fn apply(&mut self, row: &wire_core::ArchivedRow, datums: &[Datum<'_>]) {
        let retract =
            self.retracting && matches!(row.get(0).and_then(|v| v.as_str()), Some("-U" | "-D"));
        let (id, new) = self.groups.find_or_insert(key_hash(datums), datums);
        if new {
            for (agg, column) in self.aggs.iter().zip(&mut self.accs) {
                column.put(id, agg.new_acc());
            }
            self.set_group(id, 0, false, std::iter::empty());
        }
        if !self.touched_bits.get(id) {
            self.touched_bits.set(id, true);
            if let Some(changes) = &mut self.changes {
                if !changes.dirty.get(id) {
                    changes.dirty.set(id, true);
                    changes.changed.push(id);
                }
            }
            let before = self.emitted.get(id).then(|| self.result_values(id));
            self.touched.push((id, before));
        }
        for (agg, column) in self.aggs.iter().zip(&mut self.accs) {
            column.update(id, |acc| {
                if retract {
                    agg.retract(acc, row);
                } else {
                    agg.update(acc, row);
                }
            });
        }
        if let Some(rows) = &mut self.rows {
            rows[id as usize] += if retract { -1 } else { 1 };
        }
    }

    /// Sets group `id`'s columns (a new id is one past their end).
    fn set_group(&mut self, id: u32, rows: i64, emitted: bool, accs: impl Iterator<Item = Acc>) {
        for (column, acc) in self.accs.iter_mut().zip(accs) {
            column.put(id, acc);
        }
        if let Some(column) = &mut self.rows {
            put_at(column, id, rows);
        }
        self.emitted.set(id, emitted);
    }

    /// Group `id`'s accumulators.
    fn accs_of(&self, id: u32) -> Vec<Cow<'_, Acc>> {
        self.accs.iter().map(|column| column.get(id)).collect()
    }

    /// Group `id`'s current results as owned values.
    fn result_values(&self, id: u32) -> Vec<Value> {
        result_values(&self.aggs, &self.accs_of(id))
    }

    /// Emits the changes of the batch: `-U`/`+U` pairs, `+I` for new groups, `-D` for groups
    /// whose rows were all retracted.
    fn emit_changes(&mut self, out: &mut Output) -> Result<(), wire_core::Error> {
        for (id, before) in std::mem::take(&mut self.touched) {
            self.touched_bits.set(id, false);
            let alive = self.rows.as_ref().is_none_or(|rows| rows[id as usize] > 0);
            if let Some(before) = &before {
                let op = if alive { "-U" } else { "-D" };
                self.groups
                    .with_key(id, |key| push_values(out, op, key, before))?;
            }
            if alive {
                let op = if before.is_some() { "+U" } else { "+I" };
                self.emitted.set(id, true);
                let accs = self.accs_of(id);
                self.groups.with_key(id, |key| {
                    push_result(out, key, None, &self.aggs, &accs, Some(op))
                })?;
            } else if let Some(deleted) = self.groups.remove(id) {
                self.emitted.set(id, false);
                if let Some(changes) = &mut self.changes {
                    changes.deleted.push(deleted);
                }
            }
        }
        Ok(())
    }

    /// Appends group `id`'s record (tagged `tag`) to its key group's section.
    fn put_group(&self, sections: &mut Sections, tag: u8, id: u32) {
        let out = sections.of_hash(self.groups.hash(id));
        out.push(tag);
        self.groups.with_key(id, |key| snapshot::put_row(out, key));
        let rows = self.rows.as_ref().map_or(1, |rows| rows[id as usize]);
        snapshot::put_i64(out, rows);
        out.push(u8::from(self.emitted.get(id)));
        for column in &self.accs {
            snapshot::put_acc(out, &column.get(id));
        }
    }

    /// Forgets the changes noted so far: a snapshot now holds them.
    fn reset_changes(&mut self) {
        if let Some(changes) = &mut self.changes {
            for &id in &changes.changed {
                changes.dirty.set(id, false);
            }
            changes.changed.clear();
            changes.deleted.clear();
        }
    }

    /// Makes room for `more` groups in the index and every column (growing them step by step
    /// would copy each column once more, and fault its pages in twice).
    fn reserve(&mut self, more: usize) {
        self.groups.reserve(more);
        self.accs.iter_mut().for_each(|column| column.reserve(more));
        if let Some(rows) = &mut self.rows {
            rows.reserve(more);
        }
    }

    fn columns_bytes(&self) -> usize {
        let accs: usize = self.accs.iter().map(AccColumn::footprint_bytes).sum();
        let rows = self.rows.as_ref().map_or(0, |rows| rows.capacity() * 8);
        accs + rows + self.emitted.bytes() + self.touched_bits.bytes()
    }
}

impl Stateful for UnboundedAggregate {
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        _now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let view = batch.view();
        let keys = std::mem::take(&mut self.keys);
        let mut datums = Vec::with_capacity(keys.len());
        for row in view.rows() {
            eval_into(&keys, row, &mut datums);
            self.apply(row, &datums);
        }
        self.keys = keys;
        self.emit_changes(out)
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Output) -> Result<(), wire_core::Error> {
        Ok(())
    }

    fn groups(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups.footprint_bytes() + self.columns_bytes()
    }

    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let reserve = self.snapshot_size.reserve_for(self.groups.len());
        let mut sections = Sections::new(max_parallelism, Vec::new()).reserving(reserve);
        for id in self.groups.ids() {
            self.put_group(&mut sections, RECORD_GROUP, id);
        }
        self.reset_changes();
        let sections = sections.finish();
        self.snapshot_size = SnapshotSize::of(&sections, self.groups.len());
        Ok(sections)
    }

    fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Changes::default);
    }

    fn snapshot_changes(&mut self, max_parallelism: u32) -> Option<Result<Vec<Section>, String>> {
        let changes = self.changes.as_ref()?;
        let mut sections = Sections::new(max_parallelism, Vec::new());
        // Deletions first: a key deleted and added again since ends up present.
        for (hash, key) in &changes.deleted {
            let out = sections.of_hash(*hash);
            out.push(RECORD_DELETE);
            snapshot::put_row(out, key);
        }
        for &id in &changes.changed {
            if self.groups.is_live(id) {
                self.put_group(&mut sections, RECORD_UPSERT, id);
            }
        }
        self.reset_changes();
        Some(Ok(sections.finish()))
    }

    fn restore_size(&mut self, bytes: usize) {
        self.restoring = bytes;
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        if self.restoring > 0 {
            // Sections of one snapshot hold groups of about one size: from the first, make
            // room for all (growing step by step would rehash and copy the table each time).
            let groups = self.restore_records(&mut reader)?;
            let per_byte = groups as f64 / section.bytes.len().max(1) as f64;
            let rest = self.restoring.saturating_sub(section.bytes.len());
            self.restoring = 0;
            self.reserve((rest as f64 * per_byte * 1.05) as usize);
            return Ok(());
        }
        self.restore_records(&mut reader).map(|_| ())
    }
}

impl UnboundedAggregate {
    /// Applies a section's records; how many there were. Groups go into the columns in the
    /// order they are read (ids in sequence, so the columns fill front to back), decoded
    /// through buffers that are reused: nothing is allocated per group.
    fn restore_records(&mut self, reader: &mut snapshot::Reader<'_>) -> Result<usize, StateError> {
        let mut records = 0;
        let mut key = Vec::new();
        let mut accs = Vec::with_capacity(self.aggs.len());
        while !reader.is_empty() {
            records += 1;
            let at = reader.offset();
            let tag = reader.u8("record")?;
            if tag != RECORD_DELETE && tag != RECORD_GROUP && tag != RECORD_UPSERT {
                return Err(snapshot::corrupt(at, format!("unknown record {tag}")));
            }
            reader.row_into(&mut key)?;
            let hash = key_hash(&key);
            if tag == RECORD_DELETE {
                if let Some(id) = self.groups.find_owned(hash, &key) {
                    self.groups.remove(id);
                    self.emitted.set(id, false);
                }
                continue;
            }
            let rows = reader.i64("rows")?;
            let emitted = reader.u8("emitted")? != 0;
            accs.clear();
            for call in &self.aggs {
                accs.push(reader.acc(call)?);
            }
            // A whole snapshot holds each key once, and is restored into an empty table.
            let found = match tag {
                RECORD_UPSERT => self.groups.find_owned(hash, &key),
                _ => None,
            };
            let id = match found {
                Some(id) => id,
                None => self.groups.insert_new(hash, key.drain(..).collect()),
            };
            self.set_group(id, rows, emitted, accs.drain(..));
        }
        Ok(records)
    }
}

/// The current results as owned values.
fn result_values<A: Borrow<Acc>>(aggs: &[AggCall], accs: &[A]) -> Vec<Value> {
    aggs.iter()
        .zip(accs)
        .map(|(agg, acc)| super::to_value(&agg.result(acc.borrow())))
        .collect()
}

/// Appends `op, keys, results` from owned results.
fn push_values(
    out: &mut Output,
    op: &str,
    key: &[Value],
    results: &[Value],
) -> Result<(), wire_core::Error> {
    let mut row: Vec<ValueRef<'_>> = Vec::with_capacity(key.len() + results.len() + 1);
    row.push(ValueRef::Str(op));
    row.extend(key.iter().map(Value::as_ref));
    row.extend(results.iter().map(Value::as_ref));
    out.push(&row, None)
}

pub(super) fn new_accs(aggs: &[AggCall]) -> Accs {
    aggs.iter().map(|agg| agg.new_acc()).collect()
}

/// Appends one result row: `[op,] keys, [window_start, window_end,] aggregates`.
pub(super) fn push_result<A: Borrow<Acc>>(
    out: &mut Output,
    key: &[Value],
    window: Option<(i64, i64)>,
    aggs: &[AggCall],
    accs: &[A],
    op: Option<&str>,
) -> Result<(), wire_core::Error> {
    let results: Vec<Datum<'_>> = aggs
        .iter()
        .zip(accs)
        .map(|(agg, acc)| agg.result(acc.borrow()))
        .collect();
    let mut row: Vec<ValueRef<'_>> = Vec::with_capacity(key.len() + results.len() + 3);
    if let Some(op) = op {
        row.push(ValueRef::Str(op));
    }
    row.extend(key.iter().map(Value::as_ref));
    if let Some((start, end)) = window {
        row.push(ValueRef::Timestamp(start));
        row.push(ValueRef::Timestamp(end));
    }
    row.extend(results.iter().map(Datum::as_value_ref));
    out.push(&row, window.map(|(_, end)| end - 1))
}
