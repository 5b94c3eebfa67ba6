//! Two-input joins on equal keys: regular (rows kept for a retention time, or forever),
//! interval (the right row's event time within bounds computed from the left row) and window
//! joins (both inputs are window results, joined on `window_end`).
//!
//! Each side keeps its rows by key; an arriving row is matched against the other side's rows
//! of its key and then stored until its expiry, which a time-ordered queue of (side, row)
//! entries enforces as the watermark advances. Inner joins of append-only inputs only ever
//! add rows, so the output is append-only.

use std::collections::{BTreeMap, VecDeque};

use smallvec::SmallVec;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{JoinKind, JoinPlan};
use wire_core::record::batch::BATCH_BYTES_MAX;
use wire_core::record::row::archived_row_len;
use wire_core::time::watermark::{WATERMARK_MAX, WATERMARK_MIN};
use wire_core::time::window::TimeAttr;
use wire_core::{ArchivedRow, Batch, BatchView, RowStore, Value, ValueRef};

use wire_core::state::snapshot;
use wire_core::state::snapshot::{Reader, Section};
use wire_core::state::StateError;

use super::flat::{put_at, FlatGroups};
use super::table::key_hash;
use super::{
    eval_into, open_section, row_time, Output, Sections, Stateful, RECORD_APPEND, RECORD_GROUP,
};

/// A join operator instance.
pub(crate) struct Join {
    keys: [Vec<Expr>; 2],
    kind: JoinKind,
    times: [Option<TimeAttr>; 2],
    sides: [Side; 2],
    /// The stored rows that can expire, by when.
    expiry: Expiry,
    watermark: i64,
    /// Snapshots taken so far, plus one: rows stored since the last have this epoch.
    epoch: u32,
    /// Groups that stored a row since the last snapshot (once checkpoints are on).
    changes: Option<Vec<(u8, u32)>>,
    /// Per side, the fields a consumer of the output reads, when not all (the planner's
    /// column pruning): stored rows hold only those, and the others are emitted as NULL.
    keep: Option<[Vec<bool>; 2]>,
}

/// Emptied expiry lists kept for reuse.
const SPARE_LISTS: usize = 64;

/// The rows waiting to expire: per side, a queue of the rows that came in expiry order (an
/// interval join's right rows expire at their event time, which mostly rises as they come),
/// and an ordered map for the others. A row in order costs a push and a pop, not a map entry.
#[derive(Default)]
struct Expiry {
    /// Per side: (expiry, row), expiries never falling front to back.
    in_order: [VecDeque<(i64, u32)>; 2],
    /// Expiry time → (side, row) of the other rows expiring then.
    rest: BTreeMap<i64, Vec<(u8, u32)>>,
    /// Emptied lists of `rest`, to reuse.
    spare: Vec<Vec<(u8, u32)>>,
}

impl Expiry {
    /// Queues row `row` of `side` to expire when the watermark passes `expires`.
    fn push(&mut self, expires: i64, side: usize, row: u32) {
        let queue = &mut self.in_order[side];
        if queue.back().is_none_or(|&(last, _)| last <= expires) {
            queue.push_back((expires, row));
            return;
        }
        let entry = (side as u8, row);
        match self.rest.last_entry() {
            Some(mut last) if *last.key() == expires => last.get_mut().push(entry),
            _ => {
                let spare = &mut self.spare;
                self.rest
                    .entry(expires)
                    .or_insert_with(|| spare.pop().unwrap_or_default())
                    .push(entry);
            }
        }
    }

    /// Takes every row that expires by `watermark` out of the queue, handing each to `due`
    /// as (side, row).
    fn take_due(&mut self, watermark: i64, mut due: impl FnMut(usize, u32)) {
        for (side, queue) in self.in_order.iter_mut().enumerate() {
            while let Some(&(expires, row)) = queue.front() {
                if expires > watermark {
                    break;
                }
                queue.pop_front();
                due(side, row);
            }
        }
        while let Some(entry) = self.rest.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let mut rows = entry.remove();
            for &(side, row) in &rows {
                due(usize::from(side), row);
            }
            if self.spare.len() < SPARE_LISTS {
                rows.clear();
                self.spare.push(rows);
            }
        }
    }
}

/// "No row" in a chain of rows.
const NONE: u32 = u32::MAX;

/// The rows waiting on one side for partners: keys in flat groups, row bytes packed in a
/// [`RowStore`], and per row the next row of its key (a key's rows form a chain, oldest
/// first) and only the times the join's kind reads. Nothing is allocated per row: a regular
/// join's row costs its bytes and 16 bytes more, an interval join's 36.
#[derive(Default)]
struct Side {
    groups: FlatGroups,
    /// By group id: its oldest row and its newest.
    first: Vec<u32>,
    last: Vec<u32>,
    rows: RowStore,
    /// By row id: the next row of its group, or [`NONE`].
    next: Vec<u32>,
    /// By row id, when rows can expire (else empty): when the watermark passing it ends
    /// the row (an interval join's left row: its upper bound; right row: its time), and
    /// the row's group.
    expires: Vec<i64>,
    group: Vec<u32>,
    /// By row id, for interval joins (else empty): its event time (right rows), or the
    /// lower bound (left rows).
    time: Vec<i64>,
    /// By row id, once changes are tracked: the [`Join::epoch`] it was stored in (0 past
    /// the end: restored, or stored before).
    epoch: Vec<u32>,
    layout: Layout,
}

/// Which times a side keeps per row.
#[derive(Default, Clone, Copy)]
struct Layout {
    /// Rows can expire (all but regular joins without retention).
    expiry: bool,
    /// Interval joins: rows have a time and bounds.
    interval: bool,
}

impl Side {
    fn new(layout: Layout) -> Side {
        Side {
            layout,
            ..Side::default()
        }
    }

    /// The rows of group `group`, oldest first.
    fn chain(&self, group: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.first.get(group as usize).copied().unwrap_or(NONE);
        std::iter::successors((first != NONE).then_some(first), |&row| {
            let next = self.next[row as usize];
            (next != NONE).then_some(next)
        })
    }

    /// Row `row`'s times, as [`Join::place`] placed it.
    fn placement(&self, row: u32) -> Placement {
        let row = row as usize;
        let expires = match self.layout.expiry {
            true => self.expires[row],
            false => WATERMARK_MAX,
        };
        match self.layout.interval {
            true => Placement {
                time: self.time[row],
                upper: expires,
                expires,
            },
            // Other joins read no time of a stored row.
            false => Placement {
                time: WATERMARK_MIN,
                upper: WATERMARK_MAX,
                expires,
            },
        }
    }

    fn epoch(&self, row: u32) -> u32 {
        self.epoch.get(row as usize).copied().unwrap_or(0)
    }

    /// Adds stored row `row` placed at `placement` as the newest of group `group` (`new`:
    /// the group was just added), noting `epoch` when changes are tracked; the epoch of the
    /// group's newest row before it.
    fn link(
        &mut self,
        row: u32,
        placement: &Placement,
        (group, new): (u32, bool),
        epoch: Option<u32>,
    ) -> Option<u32> {
        let mut previous = None;
        if new {
            put_at(&mut self.first, group, row);
        } else {
            let last = self.last[group as usize];
            self.next[last as usize] = row;
            previous = Some(self.epoch(last));
        }
        put_at(&mut self.last, group, row);
        put_at(&mut self.next, row, NONE);
        if self.layout.expiry {
            put_at(&mut self.expires, row, placement.expires);
            put_at(&mut self.group, row, group);
        }
        if self.layout.interval {
            put_at(&mut self.time, row, placement.time);
        }
        if let Some(epoch) = epoch {
            let at = row as usize;
            if at >= self.epoch.len() {
                self.epoch.resize(at + 1, 0);
            }
            self.epoch[at] = epoch;
        }
        previous
    }

    /// Stores a row (its bytes by `store`) placed at `placement` under `key`: the row's id,
    /// its group and the epoch of the group's newest row before it.
    fn push(
        &mut self,
        (hash, key): (u64, &[Datum<'_>]),
        placement: &Placement,
        epoch: Option<u32>,
        store: impl FnOnce(&mut RowStore) -> u32,
    ) -> (u32, u32, Option<u32>) {
        let row = store(&mut self.rows);
        let group = self.groups.find_or_insert(hash, key);
        let previous = self.link(row, placement, group, epoch);
        (row, group.0, previous)
    }

    /// Stores `values` placed at `placement` under the owned `key` (from a snapshot); its id.
    fn push_owned(&mut self, key: &[Value], values: &[Value], placement: &Placement) -> u32 {
        let row = self.rows.push_encoded(values);
        let hash = key_hash(key);
        let group = match self.groups.find_owned(hash, key) {
            Some(group) => (group, false),
            None => (
                self.groups.insert_new(hash, key.iter().cloned().collect()),
                true,
            ),
        };
        self.link(row, placement, group, None);
        row
    }

    /// Removes row `row` from its group (the group too, if it was its last row). Only rows
    /// that can expire are removed.
    fn remove(&mut self, row: u32) {
        if !self.layout.expiry || !self.rows.contains(row) {
            return;
        }
        let (group, next) = (self.group[row as usize], self.next[row as usize]);
        let g = group as usize;
        if self.first[g] == row {
            self.first[g] = next;
            if next == NONE {
                self.groups.discard(group);
            }
        } else {
            // Rows mostly expire oldest first, so this walk is short.
            let mut prev = self.first[g];
            while prev != NONE && self.next[prev as usize] != row {
                prev = self.next[prev as usize];
            }
            if prev != NONE {
                self.next[prev as usize] = next;
                if self.last[g] == row {
                    self.last[g] = prev;
                }
            }
        }
        self.rows.remove(row);
    }

    fn bytes(&self) -> usize {
        let u32s = self.first.capacity()
            + self.last.capacity()
            + self.next.capacity()
            + self.group.capacity()
            + self.epoch.capacity();
        self.groups.footprint_bytes()
            + u32s * size_of::<u32>()
            + (self.expires.capacity() + self.time.capacity()) * size_of::<i64>()
            + self.rows.footprint_bytes()
    }
}

/// Where a row stands: its time or bounds and its expiry.
struct Placement {
    time: i64,
    upper: i64,
    expires: i64,
}

impl Join {
    pub(crate) fn new(plan: &JoinPlan) -> Join {
        Join {
            keys: [plan.left_keys.clone(), plan.right_keys.clone()],
            kind: plan.kind.clone(),
            times: [plan.left_time, plan.right_time],
            sides: {
                let layout = Layout {
                    expiry: !matches!(plan.kind, JoinKind::Regular { retention_ms: None }),
                    interval: matches!(plan.kind, JoinKind::Interval { .. }),
                };
                [Side::new(layout), Side::new(layout)]
            },
            expiry: Expiry::default(),
            watermark: WATERMARK_MIN,
            epoch: 1,
            changes: None,
            keep: plan.keep.clone(),
        }
    }

    /// Stores a copy of row `index` of `view` (arrived on `side`) in `rows`: the fields
    /// someone reads, or the whole row; its id.
    fn store_row(
        keep: Option<&[Vec<bool>; 2]>,
        side: usize,
        view: &BatchView<'_>,
        index: usize,
        rows: &mut RowStore,
    ) -> u32 {
        match keep {
            None => rows.push_copy(view, index),
            Some(keep) => {
                let values: SmallVec<[ValueRef<'_>; 16]> = compact(
                    view.row(index).values().iter().map(|v| v.as_value_ref()),
                    &keep[side],
                )
                .collect();
                rows.push_encoded(&values)
            }
        }
    }

    /// Reads a stored row of `side` back from a snapshot (where rows are whole): the values
    /// to store.
    fn restore_row(&self, side: usize, reader: &mut Reader<'_>) -> Result<Vec<Value>, StateError> {
        let at = reader.offset();
        let values = reader.row()?;
        let values: Vec<Value> = match &self.keep {
            None => values.into_vec(),
            Some(keep) => compact(values.into_vec().into_iter(), &keep[side]).collect(),
        };
        if archived_row_len(&values) > BATCH_BYTES_MAX {
            let reason = format!("a stored row is larger than {BATCH_BYTES_MAX} bytes");
            return Err(snapshot::corrupt(at, reason));
        }
        Ok(values)
    }

    fn place(&self, side: usize, row: &ArchivedRow) -> Placement {
        let time = self.times[side]
            .and_then(|t| row_time(row, t))
            .unwrap_or(WATERMARK_MIN);
        match &self.kind {
            JoinKind::Regular { retention_ms } => Placement {
                time,
                upper: WATERMARK_MAX,
                expires: match retention_ms {
                    Some(ms) if time != WATERMARK_MIN => time.saturating_add(*ms),
                    _ => WATERMARK_MAX,
                },
            },
            JoinKind::Interval { lower, upper } if side == 0 => {
                let lower = bound(lower, row).unwrap_or(WATERMARK_MAX);
                let upper = bound(upper, row).unwrap_or(WATERMARK_MIN);
                Placement {
                    time: lower,
                    upper,
                    expires: upper,
                }
            }
            // A right row can only meet left rows whose interval starts at or before it; those
            // arrive before the watermark passes it.
            JoinKind::Interval { .. } => Placement {
                time,
                upper: time,
                expires: time,
            },
            JoinKind::Window {
                left_end,
                right_end,
            } => {
                let field = if side == 0 { *left_end } else { *right_end };
                let end = row_time(
                    row,
                    TimeAttr {
                        field,
                        offset_ms: 0,
                    },
                )
                .unwrap_or(WATERMARK_MIN);
                Placement {
                    time,
                    upper: WATERMARK_MAX,
                    expires: end.saturating_sub(1),
                }
            }
        }
    }

    fn matches(&self, side: usize, placement: &Placement, other: &Placement) -> bool {
        match &self.kind {
            JoinKind::Interval { .. } if side == 0 => {
                placement.time <= other.time && other.time <= placement.upper
            }
            JoinKind::Interval { .. } => {
                other.time <= placement.time && placement.time <= other.upper
            }
            _ => true,
        }
    }

    fn on_row(
        &mut self,
        side: usize,
        view: &BatchView<'_>,
        index: usize,
        key: &[Datum<'_>],
        out: &mut Output,
    ) -> Result<bool, wire_core::Error> {
        let row = view.row(index);
        let hash = key_hash(key);
        let placement = self.place(side, row);
        let other = &self.sides[1 - side];
        let mut matched = false;
        if let Some(group) = other.groups.find(hash, key) {
            for id in other.chain(group) {
                let stored = other.placement(id);
                if stored.expires > self.watermark && self.matches(side, &placement, &stored) {
                    if let Some(partner) = other.rows.row(id) {
                        matched = true;
                        let time = self.output_time(side, &placement, &stored);
                        emit(out, side, row, partner, self.keep.as_ref(), time)?;
                    }
                }
            }
        }
        if placement.expires > self.watermark {
            let epoch = self.epoch;
            let keep = self.keep.as_ref();
            let tracked = self.changes.is_some().then_some(epoch);
            let this = &mut self.sides[side];
            let (row, group, previous) = this.push((hash, key), &placement, tracked, |rows| {
                Join::store_row(keep, side, view, index, rows)
            });
            if let Some(changes) = &mut self.changes {
                // The previous row tells whether the group was noted in this epoch (if that
                // row has expired since, the group is noted again; snapshots dedup).
                if previous != Some(epoch) {
                    changes.push((side as u8, group));
                }
            }
            if placement.expires != WATERMARK_MAX {
                self.expiry.push(placement.expires, side, row);
            }
            return Ok(true);
        }
        Ok(matched)
    }

    /// Joins every row of `view`, which arrived on `side`.
    fn join_rows(
        &mut self,
        side: usize,
        view: &BatchView<'_>,
        keys: &[Expr],
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let mut key = Vec::with_capacity(keys.len());
        for index in 0..view.row_count() {
            eval_into(keys, view.row(index), &mut key);
            // SQL equality: a NULL key matches nothing.
            if key.iter().any(|d| matches!(d, Datum::Null)) {
                continue;
            }
            if !self.on_row(side, view, index, &key, out)? {
                out.late_rows += 1;
            }
        }
        Ok(())
    }

    /// The event time of a joined row: the right row's for interval joins, the window's for
    /// window joins.
    fn output_time(&self, side: usize, placement: &Placement, stored: &Placement) -> Option<i64> {
        match &self.kind {
            JoinKind::Interval { .. } if side == 0 => Some(stored.time),
            JoinKind::Interval { .. } => Some(placement.time),
            JoinKind::Window { .. } => Some(placement.expires),
            JoinKind::Regular { .. } => None,
        }
    }

    /// What every section starts with: the watermark.
    fn header(&self) -> Vec<u8> {
        let mut header = Vec::new();
        snapshot::put_i64(&mut header, self.watermark);
        header
    }

    /// A snapshot was taken: later rows are the next one's changes.
    fn next_epoch(&mut self) {
        self.epoch += 1;
        if let Some(changes) = &mut self.changes {
            changes.clear();
        }
    }

    fn expire(&mut self) {
        let watermark = self.watermark;
        let sides = &mut self.sides;
        self.expiry.take_due(watermark, |side, row| {
            let side = &mut sides[side];
            // Rows leave only here, each by its one entry: a live row named here is the one
            // queued (the check guards the invariant).
            if side
                .expires
                .get(row as usize)
                .is_some_and(|&e| e <= watermark)
            {
                side.remove(row);
            }
        });
    }
}

/// Appends the record (`tag`) of group `group` of `side` with those of its rows `select`
/// picks. Stored rows are written whole (pruned fields as NULL), so a snapshot reads the same
/// whatever the pruning of the build that restores it.
fn put_group(
    sections: &mut Sections,
    (tag, index): (u8, usize),
    side: &Side,
    group: u32,
    pruned: Option<&[bool]>,
    select: impl Fn(u32) -> bool,
) {
    let out = sections.of_hash(side.groups.hash(group));
    out.push(tag);
    out.push(index as u8);
    side.groups
        .with_key(group, |key| snapshot::put_row(out, key));
    let rows = || {
        side.chain(group)
            .filter(|&id| select(id))
            .filter_map(|id| Some((side.rows.row(id)?, side.placement(id))))
    };
    snapshot::put_len(out, rows().count());
    for (row, placement) in rows() {
        match pruned {
            None => snapshot::put_row(out, &row.to_values()),
            Some(keep) => {
                snapshot::put_len(out, keep.len());
                let values = expand(row, keep);
                values.for_each(|value| snapshot::put_value_ref(out, value));
            }
        }
        snapshot::put_i64(out, placement.time);
        snapshot::put_i64(out, placement.upper);
        snapshot::put_i64(out, placement.expires);
    }
}

fn bound(expr: &Expr, row: &ArchivedRow) -> Option<i64> {
    match expr.eval(row) {
        Datum::Timestamp(ms) | Datum::I64(ms) => Some(ms),
        _ => None,
    }
}

/// Appends `left fields ++ right fields`, NULL where `keep` (per side) says no one reads the
/// field; `row` arrived on `side`, `stored` is the partner.
fn emit(
    out: &mut Output,
    side: usize,
    row: &ArchivedRow,
    stored: &ArchivedRow,
    keep: Option<&[Vec<bool>; 2]>,
    time: Option<i64>,
) -> Result<(), wire_core::Error> {
    let (left, right) = if side == 0 {
        (row, stored)
    } else {
        (stored, row)
    };
    let values: SmallVec<[ValueRef<'_>; 24]> = match keep {
        None => (left.values().iter().chain(right.values()))
            .map(|v| v.as_value_ref())
            .collect(),
        // The arrived row is whole, the stored one holds the kept fields only.
        Some(keep) if side == 0 => kept(row, &keep[0])
            .chain(expand(stored, &keep[1]))
            .collect(),
        Some(keep) => expand(stored, &keep[0])
            .chain(kept(row, &keep[1]))
            .collect(),
    };
    out.push(&values, time)
}

/// The values of a whole `row`, NULL where `keep` is false.
fn kept<'r>(row: &'r ArchivedRow, keep: &'r [bool]) -> impl Iterator<Item = ValueRef<'r>> + 'r {
    let keep = keep.iter().copied().chain(std::iter::repeat(true));
    row.values().iter().zip(keep).map(|(value, keep)| {
        if keep {
            value.as_value_ref()
        } else {
            ValueRef::Null
        }
    })
}

/// The values `keep` selects (and any past its end): what a stored row holds.
fn compact<'k, T, I: Iterator<Item = T> + 'k>(
    values: I,
    keep: &'k [bool],
) -> impl Iterator<Item = T> + 'k {
    let keep = keep.iter().copied().chain(std::iter::repeat(true));
    values
        .zip(keep)
        .filter_map(|(value, keep)| keep.then_some(value))
}

/// A row [`compact`] made, whole again: `keep.len()` values, NULL where `keep` is false.
fn expand<'r>(row: &'r ArchivedRow, keep: &'r [bool]) -> impl Iterator<Item = ValueRef<'r>> + 'r {
    let mut values = row.values().iter();
    keep.iter()
        .map(move |&keep| match keep.then(|| values.next()).flatten() {
            Some(value) => value.as_value_ref(),
            None => ValueRef::Null,
        })
}

impl Stateful for Join {
    fn on_batch(
        &mut self,
        batch: &Batch,
        port: usize,
        _now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let side = port.min(1);
        let view = batch.view();
        let keys = std::mem::take(&mut self.keys[side]);
        let result = self.join_rows(side, &view, &keys, out);
        self.keys[side] = keys;
        result
    }

    fn on_watermark(&mut self, watermark: i64, _out: &mut Output) -> Result<(), wire_core::Error> {
        self.watermark = self.watermark.max(watermark);
        self.expire();
        Ok(())
    }

    fn groups(&self) -> usize {
        self.sides.iter().map(|side| side.groups.len()).sum()
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(Side::bytes).sum()
    }

    /// Header: the watermark. One group record per (side, key): the side, the key, then its
    /// rows in arrival order (row, time, upper, expires). The expiry queue is rebuilt from
    /// the rows.
    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut sections = Sections::new(max_parallelism, self.header());
        for (index, side) in self.sides.iter().enumerate() {
            let pruned = self.keep.as_ref().map(|keep| keep[index].as_slice());
            for group in side.groups.ids() {
                put_group(
                    &mut sections,
                    (RECORD_GROUP, index),
                    side,
                    group,
                    pruned,
                    |_| true,
                );
            }
        }
        self.next_epoch();
        Ok(sections.finish())
    }

    fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// The rows stored since the last snapshot, per group (`RECORD_APPEND`); rows that
    /// expired since need no record, as restoring expires by the watermark again. Every key
    /// group gets a section, if only with the header: the watermark has moved for all.
    fn snapshot_changes(&mut self, max_parallelism: u32) -> Option<Result<Vec<Section>, String>> {
        let mut changes = self.changes.take()?;
        changes.sort_unstable();
        changes.dedup();
        let mut sections = Sections::new(max_parallelism, self.header());
        sections.touch_all();
        let epoch = self.epoch;
        for &(index, group) in &changes {
            let index = usize::from(index);
            let side = &self.sides[index];
            if !side.groups.is_live(group) {
                continue;
            }
            if side.chain(group).any(|id| side.epoch(id) == epoch) {
                let pruned = self.keep.as_ref().map(|keep| keep[index].as_slice());
                let record = (RECORD_APPEND, index);
                put_group(&mut sections, record, side, group, pruned, |id| {
                    side.epoch(id) == epoch
                });
            }
        }
        changes.clear();
        self.changes = Some(changes);
        self.next_epoch();
        Some(Ok(sections.finish()))
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        self.watermark = self.watermark.max(reader.i64("watermark")?);
        while !reader.is_empty() {
            let at = reader.offset();
            let tag = reader.u8("record")?;
            if tag != RECORD_GROUP && tag != RECORD_APPEND {
                return Err(snapshot::corrupt(at, format!("unknown record {tag}")));
            }
            let side_at = reader.offset();
            let side = match reader.u8("side")? {
                side @ (0 | 1) => usize::from(side),
                other => {
                    let reason = format!("join side {other} is not 0 or 1");
                    return Err(snapshot::corrupt(side_at, reason));
                }
            };
            let key = reader.row()?;
            let count = reader.count("stored row")?;
            for _ in 0..count {
                let values = self.restore_row(side, &mut reader)?;
                let placement = Placement {
                    time: reader.i64("row time")?,
                    upper: reader.i64("row upper bound")?,
                    expires: reader.i64("row expiry")?,
                };
                let this = &mut self.sides[side];
                let row = this.push_owned(&key, &values, &placement);
                if this.layout.expiry && placement.expires != WATERMARK_MAX {
                    self.expiry.push(placement.expires, side, row);
                }
            }
        }
        // Rows of an earlier snapshot that expired by this one's watermark.
        self.expire();
        Ok(())
    }
}
