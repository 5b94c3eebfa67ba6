//! Group aggregation over tumbling, hop and cumulate windows, built from panes.
//!
//! A hop window of `size` sliding by `slide` is cut into panes of `gcd(size, slide)`: a row
//! updates one pane's accumulators, and a window that fires merges its `size / pane` panes, so
//! the cost per row does not grow with the number of overlapping windows. A cumulate window of
//! `size` growing by `step` has panes of `step`: each step boundary emits, per key, the merge
//! of the panes since the period's start.
//!
//! State is columnar and pane-major. Keys live once, in a [`FlatGroups`] that names each by a
//! `u32` id. Each live pane (a handful: the open windows' and those kept for late rows) holds a
//! slot per key with rows in it: a dense `id → slot` array, the slot's key id, and one
//! [`AccColumn`] per aggregate call by slot. A row costs one key lookup, a look at the few
//! panes from the newest, and an update in place; a pane is a few plain arrays (a count is an
//! `i64`), nothing is allocated per key or per pane entry, and a tumbling window fires by
//! walking its one pane's slots, not every key.
//!
//! Firing does not merge every pane of a window again. Each key keeps the merge of the window
//! it last emitted (its *slide*, in columns by key id); the next window adds the panes that
//! entered and, for a hop window, takes out the panes that left. Taking out needs aggregates
//! that unmerge exactly (counts, integer sums and averages); a hop window with any other
//! aggregate merges its panes on every firing. So a firing costs a few pane merges per key, not
//! `size / slide` of them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use smallvec::SmallVec;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::AggregatePlan;
use wire_core::operator::agg::{Acc, AggCall};
use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;
use wire_core::time::watermark::{WATERMARK_MAX, WATERMARK_MIN};
use wire_core::time::window::{expired, fires, WindowKind, WindowPlan};
use wire_core::{ArchivedRow, Batch};

use super::aggregate::push_result;
use super::flat::{put_at, AccColumn, Bits, FlatGroups};
use super::table::key_hash;
use super::{
    eval_into, open_section, Clock, Output, Sections, Stateful, RECORD_GROUP, RECORD_REFIRE,
};

/// A key's accumulators read from their columns (on the stack for a few aggregate calls).
type Accs<'a> = SmallVec<[Cow<'a, Acc>; 4]>;

/// A tumbling, hop or cumulate window aggregate (event or processing time).
pub(crate) struct WindowAggregate {
    keys: Vec<Expr>,
    aggs: Vec<AggCall>,
    kind: WindowKind,
    lateness_ms: i64,
    clock: Clock,
    /// The keys with rows in a live pane, by id.
    groups: FlatGroups,
    /// How many live panes hold each key, by key id: a key in none is removed.
    pane_counts: Vec<u32>,
    /// The live panes, oldest first.
    panes: Vec<Pane>,
    /// The keys' slides, when keys keep one: windows of more than one pane, and either cumulate
    /// windows (which only add panes) or aggregates that unmerge exactly.
    slides: Option<Slides>,
    /// Whether every aggregate unmerges exactly, so a slide can take panes out.
    unmerges: bool,
    watermark: i64,
    /// Every window ending at or before this has fired.
    fired_end: i64,
    /// Window end → hashes of keys a late row updated after the window fired.
    refire: BTreeMap<i64, Vec<u64>>,
    /// A firing that stopped because the output was full.
    paused: Option<Paused>,
}

/// Where a firing stopped: the window's end, where to go on (the next key id when keys keep
/// slides, else the pane inside the window and the slot in it), and the keys emitted so far
/// from an earlier pane of the window.
struct Paused {
    end: i64,
    at: (usize, u32),
    seen: Bits,
}

/// One pane's accumulators, a slot per key with rows in it.
struct Pane {
    start: i64,
    /// Key id → the key's slot + 1 (0: no rows of the key in this pane).
    slots: Vec<u32>,
    /// Slot → key id.
    ids: Vec<u32>,
    /// One column per aggregate call, by slot.
    accs: Vec<AccColumn>,
}

impl Pane {
    fn new(start: i64, aggs: &[AggCall]) -> Pane {
        Pane {
            start,
            slots: Vec::new(),
            ids: Vec::new(),
            accs: aggs
                .iter()
                .map(|agg| AccColumn::for_acc(&agg.new_acc()))
                .collect(),
        }
    }

    /// Key `id`'s slot, if the key has rows in the pane.
    fn slot(&self, id: u32) -> Option<u32> {
        match self.slots.get(id as usize) {
            Some(&slot) if slot > 0 => Some(slot - 1),
            _ => None,
        }
    }

    /// Key `id`'s slot, added with fresh accumulators if the key had none; whether it was.
    fn slot_or_add(&mut self, id: u32, aggs: &[AggCall]) -> (u32, bool) {
        if let Some(slot) = self.slot(id) {
            return (slot, false);
        }
        let at = id as usize;
        if at >= self.slots.len() {
            self.slots.resize(at + 1, 0);
        }
        let slot = self.ids.len() as u32;
        self.ids.push(id);
        self.slots[at] = slot + 1;
        for (agg, column) in aggs.iter().zip(&mut self.accs) {
            column.put(slot, agg.new_acc());
        }
        (slot, true)
    }

    /// The accumulators of `slot`.
    fn accs(&self, slot: u32) -> Accs<'_> {
        self.accs.iter().map(|column| column.get(slot)).collect()
    }

    fn bytes(&self) -> usize {
        let accs: usize = self.accs.iter().map(AccColumn::footprint_bytes).sum();
        (self.slots.capacity() + self.ids.capacity()) * size_of::<u32>() + accs
    }
}

/// The keys' slides, by key id: the merge of a key's panes that start in `[start, end)`, the
/// window it last emitted less the panes purged since.
struct Slides {
    on: Bits,
    start: Vec<i64>,
    end: Vec<i64>,
    /// How many of the key's panes start in `[start, end)`.
    panes: Vec<u32>,
    /// One column per aggregate call, by key id.
    accs: Vec<AccColumn>,
}

impl Slides {
    fn new(aggs: &[AggCall]) -> Slides {
        Slides {
            on: Bits::default(),
            start: Vec::new(),
            end: Vec::new(),
            panes: Vec::new(),
            accs: aggs
                .iter()
                .map(|agg| AccColumn::for_acc(&agg.new_acc()))
                .collect(),
        }
    }

    /// Key `id`'s slide window, if it keeps one.
    fn window(&self, id: u32) -> Option<(i64, i64)> {
        let at = id as usize;
        self.on.get(id).then(|| (self.start[at], self.end[at]))
    }

    /// Gives key `id` (new, or reusing a removed key's id) no slide.
    fn clear(&mut self, id: u32, aggs: &[AggCall]) {
        self.on.set(id, false);
        put_at(&mut self.start, id, 0);
        put_at(&mut self.end, id, 0);
        put_at(&mut self.panes, id, 0);
        for (agg, column) in aggs.iter().zip(&mut self.accs) {
            column.put(id, agg.new_acc());
        }
    }

    /// Sets key `id`'s slide to the merge of the `panes` given, which hold it.
    fn set(&mut self, id: u32, window: (i64, i64), aggs: &[AggCall], panes: &[Pane]) -> bool {
        let mut count = 0;
        for pane in panes {
            let Some(slot) = pane.slot(id) else {
                continue;
            };
            for ((agg, into), from) in aggs.iter().zip(&mut self.accs).zip(&pane.accs) {
                let from = from.get(slot);
                if count == 0 {
                    into.put(id, from.into_owned());
                } else {
                    into.update(id, |acc| agg.merge(acc, &from));
                }
            }
            count += 1;
        }
        if count > 0 {
            let at = id as usize;
            (self.start[at], self.end[at], self.panes[at]) = (window.0, window.1, count);
            self.on.set(id, true);
        }
        count > 0
    }

    /// Folds pane `slot`'s accumulators into key `id`'s slide (`sign` +1), or takes them out
    /// (-1).
    fn fold(&mut self, id: u32, aggs: &[AggCall], pane: &Pane, slot: u32, sign: i32) {
        for ((agg, into), from) in aggs.iter().zip(&mut self.accs).zip(&pane.accs) {
            let from = from.get(slot);
            into.update(id, |acc| {
                if sign > 0 {
                    agg.merge(acc, &from);
                } else {
                    agg.unmerge(acc, &from);
                }
            });
        }
        let count = &mut self.panes[id as usize];
        *count = count.saturating_add_signed(sign);
    }

    /// Moves key `id`'s slide to `window`, which starts inside it and ends at or after it:
    /// takes out the panes that `left` and adds those that `entered` (a few, however many the
    /// window holds). How many of the key's panes the slide holds then.
    fn advance(
        &mut self,
        id: u32,
        window: (i64, i64),
        aggs: &[AggCall],
        (left, entered): (&[Pane], &[Pane]),
    ) -> u32 {
        for pane in left {
            if let Some(slot) = pane.slot(id) {
                self.fold(id, aggs, pane, slot, -1);
            }
        }
        for pane in entered {
            if let Some(slot) = pane.slot(id) {
                self.fold(id, aggs, pane, slot, 1);
            }
        }
        let at = id as usize;
        (self.start[at], self.end[at]) = window;
        self.panes[at]
    }

    /// A pane is purged: takes it out of key `id`'s slide if the slide holds it (aggregates
    /// that unmerge), or drops the slide (others).
    fn purge(&mut self, id: u32, aggs: &[AggCall], pane: &Pane, slot: u32, unmerges: bool) {
        let Some((_, end)) = self.window(id).filter(|(start, _)| *start <= pane.start) else {
            return;
        };
        if !unmerges {
            self.on.set(id, false);
            return;
        }
        if pane.start < end {
            self.fold(id, aggs, pane, slot, -1);
        }
        self.start[id as usize] = pane.start.saturating_add(1);
    }

    fn bytes(&self) -> usize {
        let accs: usize = self.accs.iter().map(AccColumn::footprint_bytes).sum();
        (self.start.capacity() + self.end.capacity()) * size_of::<i64>()
            + self.panes.capacity() * size_of::<u32>()
            + self.on.bytes()
            + accs
    }
}

/// The index of the oldest of the `count` panes that hold key `id`, found from the newest.
fn oldest_pane(panes: &[Pane], id: u32, count: u32) -> usize {
    let mut left = count;
    for (at, pane) in panes.iter().enumerate().rev() {
        if left == 0 {
            return at + 1;
        }
        if pane.slot(id).is_some() {
            left -= 1;
        }
    }
    0
}

/// The index range of the panes starting in `[start, end)`.
fn range(panes: &[Pane], start: i64, end: i64) -> std::ops::Range<usize> {
    let from = panes.partition_point(|pane| pane.start < start);
    let to = from + panes[from..].partition_point(|pane| pane.start < end);
    from..to
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
            slides: slides.then(|| Slides::new(&plan.aggregates)),
            unmerges,
            keys: plan.keys.clone(),
            aggs: plan.aggregates.clone(),
            kind: window.kind,
            lateness_ms: window.allowed_lateness_ms,
            clock: Clock::new(window.time, plan.time),
            groups: FlatGroups::default(),
            pane_counts: Vec::new(),
            panes: Vec::new(),
            watermark: WATERMARK_MIN,
            fired_end: WATERMARK_MIN,
            refire: BTreeMap::new(),
            paused: None,
        }
    }

    /// The id of key `key` (hash `hash`), added if new.
    fn key_id(&mut self, hash: u64, key: &[Datum<'_>]) -> u32 {
        let (id, new) = self.groups.find_or_insert(hash, key);
        if new {
            self.new_key(id);
        }
        id
    }

    /// Sets up the per-key columns for key `id`, just added.
    fn new_key(&mut self, id: u32) {
        put_at(&mut self.pane_counts, id, 0);
        if let Some(slides) = &mut self.slides {
            slides.clear(id, &self.aggs);
        }
    }

    /// The index of pane `start`, added if new.
    fn pane_index(&mut self, start: i64) -> usize {
        // Rows mostly land in the newest pane; search from the back.
        match self.panes.iter().rposition(|pane| pane.start <= start) {
            Some(at) if self.panes[at].start == start => at,
            found => {
                let at = found.map_or(0, |at| at + 1);
                self.panes.insert(at, Pane::new(start, &self.aggs));
                at
            }
        }
    }

    /// Key `id`'s slot in pane `at`, added if new.
    fn slot_in(&mut self, at: usize, id: u32) -> (u32, bool) {
        let (slot, added) = self.panes[at].slot_or_add(id, &self.aggs);
        if added {
            self.pane_counts[id as usize] += 1;
        }
        (slot, added)
    }

    fn add_row(&mut self, row: &ArchivedRow, ts: i64, datums: &[Datum<'_>]) {
        let hash = key_hash(datums);
        let start = self.kind.pane_start(ts);
        let id = self.key_id(hash, datums);
        let at = self.pane_index(start);
        let (slot, added) = self.slot_in(at, id);
        let pane = &mut self.panes[at];
        for (agg, column) in self.aggs.iter().zip(&mut pane.accs) {
            column.update(slot, |acc| agg.update(acc, row));
        }
        // A row behind the last emitted window's end, in a pane a later window still reads.
        if let Some(slides) = &mut self.slides {
            let holds = slides
                .window(id)
                .is_some_and(|(from, to)| from <= start && start < to);
            if holds {
                for (agg, column) in self.aggs.iter().zip(&mut slides.accs) {
                    column.update(id, |acc| agg.update(acc, row));
                }
                if added {
                    slides.panes[id as usize] += 1;
                }
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
        self.go_on(out)
    }

    /// Fires the windows the watermark closes, from where a paused firing stopped; pauses
    /// again when `out` fills up, else re-fires late-updated windows and purges.
    fn go_on(&mut self, out: &mut Output) -> Result<(), wire_core::Error> {
        loop {
            let Paused { end, at, mut seen } = match self.paused.take() {
                Some(paused) => paused,
                None => match self.next_end() {
                    Some(end) if fires(end, self.watermark) => Paused {
                        end,
                        at: (0, 0),
                        seen: Bits::default(),
                    },
                    _ => break,
                },
            };
            let stopped = if self.slides.is_some() {
                self.fire_slides(end, at.1, out)?
            } else {
                self.emit_window(end, None, at, &mut seen, out)?
            };
            if let Some(at) = stopped {
                self.paused = Some(Paused { end, at, seen });
                return Ok(());
            }
            self.fired_end = end;
        }
        let refire = std::mem::take(&mut self.refire);
        for (end, mut hashes) in refire {
            hashes.sort_unstable();
            hashes.dedup();
            let mut seen = Bits::default();
            self.emit_window(end, Some(&hashes), (0, 0), &mut seen, out)?;
        }
        self.purge();
        Ok(())
    }

    /// Drops the panes no open window reads (the oldest), and keys left without panes.
    fn purge(&mut self) {
        let (kind, lateness, watermark) = (self.kind, self.lateness_ms, self.watermark);
        let dead = |pane: &Pane| expired(kind.last_end_of_pane(pane.start), lateness, watermark);
        let gone = self.panes.iter().take_while(|pane| dead(pane)).count();
        for pane in self.panes.drain(..gone) {
            for (slot, &id) in (0..).zip(&pane.ids) {
                if let Some(slides) = &mut self.slides {
                    slides.purge(id, &self.aggs, &pane, slot, self.unmerges);
                }
                let count = &mut self.pane_counts[id as usize];
                *count -= 1;
                if *count == 0 {
                    self.groups.discard(id);
                }
            }
        }
    }

    /// The end of the earliest window that has not fired and holds data.
    fn next_end(&self) -> Option<i64> {
        for pane in &self.panes {
            let after = pane.start.max(self.fired_end);
            let end = self.kind.first_end_after(after);
            if end <= self.kind.last_end_of_pane(pane.start) {
                return Some(end);
            }
        }
        None
    }

    /// Emits window `[start, end)` for every key with rows in it, the first time, from the
    /// keys' slides: moved from the last window where they can be, else merged from the
    /// window's panes. Goes from key id `first`; stops when `out` is full, saying where to go
    /// on.
    fn fire_slides(
        &mut self,
        end: i64,
        first: u32,
        out: &mut Output,
    ) -> Result<Option<(usize, u32)>, wire_core::Error> {
        let start = self.kind.start_of(end);
        let window = (start, end);
        let Some(slides) = &mut self.slides else {
            return Ok(None);
        };
        let (aggs, panes) = (&self.aggs, &self.panes);
        let inside = range(panes, start, end);
        // Keys mostly hold the same window (the last one): its panes that left and entered,
        // found once.
        let mut moved = ((0, 0), &panes[..0], &panes[..0]);
        for id in self.groups.ids_from(first) {
            let held = slides.window(id).filter(|&(from, to)| {
                // Windows fire in time order: from the last one, take out the panes that left
                // and add those that entered.
                from <= start && start < to && to <= end && (self.unmerges || from == start)
            });
            let holds = match held {
                Some(held) => {
                    if moved.0 != held {
                        let left = &panes[range(panes, held.0, start)];
                        moved = (held, left, &panes[range(panes, held.1, end)]);
                    }
                    slides.advance(id, window, aggs, (moved.1, moved.2)) > 0
                }
                None => {
                    // Mostly a new key, in the newest panes only: look from the key's oldest.
                    let oldest = oldest_pane(panes, id, self.pane_counts[id as usize]);
                    let from = oldest.clamp(inside.start, inside.end);
                    slides.set(id, window, aggs, &panes[from..inside.end])
                }
            };
            if !holds {
                continue;
            }
            let accs: Accs<'_> = slides.accs.iter().map(|c| c.get(id)).collect();
            self.groups.with_key(id, |key| {
                push_result(out, key, Some(window), aggs, &accs, None)
            })?;
            if out.full() {
                return Ok(Some((0, id + 1)));
            }
        }
        Ok(None)
    }

    /// Emits window `[start, end)` by merging its panes, for every key or only keys hashing
    /// into `only`: key by key in the order they first have rows in the window's panes, from
    /// pane `at.0` of the window and its slot `at.1`, `seen` holding the keys emitted from an
    /// earlier pane. Stops when `out` is full (all of `only` is emitted at once), saying where
    /// to go on.
    fn emit_window(
        &self,
        end: i64,
        only: Option<&[u64]>,
        at: (usize, u32),
        seen: &mut Bits,
        out: &mut Output,
    ) -> Result<Option<(usize, u32)>, wire_core::Error> {
        let start = self.kind.start_of(end);
        let window = Some((start, end));
        let inside = &self.panes[range(&self.panes, start, end)];
        let mut merged = Vec::with_capacity(self.aggs.len());
        let mut later = Vec::new();
        for (k, pane) in inside.iter().enumerate().skip(at.0) {
            let first = if k == at.0 { at.1 } else { 0 };
            for (slot, &id) in (first..).zip(&pane.ids[first as usize..]) {
                if seen.get(id)
                    || only.is_some_and(|only| only.binary_search(&self.groups.hash(id)).is_err())
                {
                    continue;
                }
                // The key is in at most this many of the later panes.
                let mut left = self.pane_counts[id as usize] - 1;
                later.clear();
                for (at, after) in inside.iter().enumerate().skip(k + 1) {
                    if left == 0 {
                        break;
                    }
                    if let Some(slot) = after.slot(id) {
                        later.push((at, slot));
                        left -= 1;
                    }
                }
                let accs = pane.accs(slot);
                if later.is_empty() {
                    self.groups.with_key(id, |key| {
                        push_result(out, key, window, &self.aggs, &accs, None)
                    })?;
                } else {
                    seen.set(id, true);
                    merged.clear();
                    merged.extend(accs.into_iter().map(Cow::into_owned));
                    for &(at, slot) in &later {
                        let aggs = self.aggs.iter().zip(&mut merged);
                        for ((agg, into), from) in aggs.zip(&inside[at].accs) {
                            agg.merge(into, &from.get(slot));
                        }
                    }
                    self.groups.with_key(id, |key| {
                        push_result(out, key, window, &self.aggs, &merged, None)
                    })?;
                }
                if only.is_none() && out.full() {
                    return Ok(Some((k, slot + 1)));
                }
            }
        }
        Ok(None)
    }

    /// Bytes the per-key and per-pane columns take at their capacity.
    fn columns_bytes(&self) -> usize {
        let panes: usize = self.panes.iter().map(Pane::bytes).sum();
        let slides = self.slides.as_ref().map_or(0, Slides::bytes);
        self.pane_counts.capacity() * size_of::<u32>() + panes + slides
    }

    /// Applies a section's group record: the key and its panes.
    fn restore_group(
        &mut self,
        reader: &mut snapshot::Reader<'_>,
        key: &mut Vec<wire_core::Value>,
    ) -> Result<(), StateError> {
        reader.row_into(key)?;
        let hash = key_hash(key);
        let id = match self.groups.find_owned(hash, key) {
            Some(id) => id,
            None => {
                let id = self.groups.insert_new(hash, key.drain(..).collect());
                self.new_key(id);
                id
            }
        };
        for _ in 0..reader.count("pane")? {
            let start = reader.i64("pane start")?;
            let at = self.pane_index(start);
            let (slot, _) = self.slot_in(at, id);
            for (call, column) in self.aggs.iter().zip(&mut self.panes[at].accs) {
                column.put(slot, reader.acc(call)?);
            }
        }
        Ok(())
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

    fn pending(&self) -> bool {
        self.paused.is_some()
    }

    fn resume(&mut self, out: &mut Output) -> Result<(), wire_core::Error> {
        self.go_on(out)
    }

    fn groups(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        self.groups.footprint_bytes() + self.columns_bytes()
    }

    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut header = Vec::new();
        snapshot::put_i64(&mut header, self.watermark);
        snapshot::put_i64(&mut header, self.fired_end);
        let mut sections = Sections::new(max_parallelism, header);
        for id in self.groups.ids() {
            let out = sections.of_hash(self.groups.hash(id));
            out.push(RECORD_GROUP);
            self.groups.with_key(id, |key| snapshot::put_row(out, key));
            snapshot::put_len(out, self.pane_counts[id as usize] as usize);
            for pane in &self.panes {
                if let Some(slot) = pane.slot(id) {
                    snapshot::put_i64(out, pane.start);
                    pane.accs
                        .iter()
                        .for_each(|column| snapshot::put_acc(out, &column.get(slot)));
                }
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
        let mut key = Vec::new();
        while !reader.is_empty() {
            let at = reader.offset();
            match reader.u8("record")? {
                // Slides are rebuilt by the next window to fire.
                RECORD_GROUP => self.restore_group(&mut reader, &mut key)?,
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
