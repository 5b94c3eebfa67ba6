//! Two-input joins on equal keys: regular (rows kept for a retention time, or forever),
//! interval (the right row's event time within bounds computed from the left row) and window
//! joins (both inputs are window results, joined on `window_end`).
//!
//! Each side keeps its rows by key; an arriving row is matched against the other side's rows
//! of its key and then stored until its expiry, which a time-ordered queue of (side, group)
//! entries enforces as the watermark advances. Inner joins of append-only inputs only ever
//! add rows, so the output is append-only.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{JoinKind, JoinPlan};
use wire_core::time::watermark::{WATERMARK_MAX, WATERMARK_MIN};
use wire_core::time::window::TimeAttr;
use wire_core::{ArchivedRow, AsValueRef, Batch, BatchView, OwnedRow, ValueRef};

use wire_core::state::snapshot;
use wire_core::state::snapshot::{Reader, Section};
use wire_core::state::StateError;

use super::table::{key_hash, Group};
use super::{
    eval_into, open_section, put_owned_row, read_owned_row, row_time, GroupTable, Output, Sections,
    Stateful, RECORD_APPEND, RECORD_GROUP,
};

/// A join operator instance.
pub(crate) struct Join {
    keys: [Vec<Expr>; 2],
    kind: JoinKind,
    times: [Option<TimeAttr>; 2],
    sides: [GroupTable<Waiting>; 2],
    /// Expiry time → (side, group) with a row expiring then.
    expiry: BTreeMap<i64, Vec<(u8, u32)>>,
    watermark: i64,
    /// Snapshots taken so far, plus one: rows stored since the last have this epoch.
    epoch: u32,
    /// Groups that stored a row since the last snapshot (once checkpoints are on).
    changes: Option<Vec<(u8, u32)>>,
    /// Per side, the fields a consumer of the output reads, when not all (the planner's
    /// column pruning): stored rows hold only those, and the others are emitted as NULL.
    keep: Option<[Vec<bool>; 2]>,
}

/// The rows of one key on one side, oldest first. Most keys wait with one row (a person, an
/// auction), which is kept in the group itself rather than in an allocation of its own.
type Waiting = SmallVec<[Stored; 1]>;

/// A row waiting for partners.
struct Stored {
    row: OwnedRow,
    /// Its event time (right rows of an interval join), or the lower bound (left rows).
    time: i64,
    /// Upper bound of an interval join's left row.
    upper: i64,
    /// When the watermark passes this, the row can no longer match.
    expires: i64,
    /// The [`Join::epoch`] it was stored in (0: restored).
    epoch: u32,
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
            sides: [GroupTable::default(), GroupTable::default()],
            expiry: BTreeMap::new(),
            watermark: WATERMARK_MIN,
            epoch: 1,
            changes: None,
            keep: plan.keep.clone(),
        }
    }

    /// A copy of row `index` of `view` (arrived on `side`) to store: the fields someone
    /// reads, or the whole row.
    fn stored_row(&self, side: usize, view: &BatchView<'_>, index: usize) -> OwnedRow {
        match &self.keep {
            None => OwnedRow::copy_of(view, index),
            Some(keep) => {
                let values: SmallVec<[ValueRef<'_>; 16]> = compact(
                    view.row(index).values().iter().map(|v| v.as_value_ref()),
                    &keep[side],
                )
                .collect();
                OwnedRow::encode(&values)
            }
        }
    }

    /// Reads a stored row of `side` back from a snapshot (where rows are whole).
    fn restore_row(&self, side: usize, reader: &mut Reader<'_>) -> Result<OwnedRow, StateError> {
        let Some(keep) = &self.keep else {
            return read_owned_row(reader);
        };
        let values = reader.row()?;
        let values: SmallVec<[ValueRef<'_>; 16]> =
            compact(values.iter().map(|v| v.as_value()), &keep[side]).collect();
        Ok(OwnedRow::encode(&values))
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

    fn matches(&self, side: usize, placement: &Placement, other: &Stored) -> bool {
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
        let other = 1 - side;
        let mut matched = false;
        if let Some(id) = self.sides[other].find(hash, key) {
            if let Some(group) = self.sides[other].get(id) {
                for stored in &group.value {
                    if stored.expires > self.watermark && self.matches(side, &placement, stored) {
                        matched = true;
                        let time = self.output_time(side, &placement, stored);
                        emit(out, side, row, stored.row.row(), self.keep.as_ref(), time)?;
                    }
                }
            }
        }
        if placement.expires > self.watermark {
            let row = self.stored_row(side, view, index);
            let (id, _) = self.sides[side].find_or_insert(hash, key, Waiting::new);
            if let Some(group) = self.sides[side].get_mut(id) {
                let epoch = self.epoch;
                if let Some(changes) = &mut self.changes {
                    // The newest row tells whether the group was noted in this epoch (if that
                    // row has expired since, the group is noted again; snapshots dedup).
                    if group.value.last().is_none_or(|s| s.epoch != epoch) {
                        changes.push((side as u8, id));
                    }
                }
                group.value.push(Stored {
                    row,
                    time: placement.time,
                    upper: placement.upper,
                    expires: placement.expires,
                    epoch,
                });
            }
            if placement.expires != WATERMARK_MAX {
                self.expiry
                    .entry(placement.expires)
                    .or_default()
                    .push((side as u8, id));
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
    fn output_time(&self, side: usize, placement: &Placement, stored: &Stored) -> Option<i64> {
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
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let mut due = entry.remove();
            due.sort_unstable();
            due.dedup();
            for (side, id) in due {
                let table = &mut self.sides[usize::from(side)];
                let empty = table.get_mut(id).is_some_and(|group| {
                    group.value.retain(|s| s.expires > watermark);
                    group.value.is_empty()
                });
                if empty {
                    table.remove(id);
                }
            }
        }
    }
}

/// Appends the record (`tag`) of `group` on `side` with those of its rows `select` picks.
/// Stored rows are written whole (pruned fields as NULL), so a snapshot reads the same
/// whatever the pruning of the build that restores it.
fn put_group(
    sections: &mut Sections,
    (tag, side): (u8, usize),
    group: &Group<Waiting>,
    pruned: Option<&[bool]>,
    select: impl Fn(&Stored) -> bool,
) {
    let out = sections.of_hash(group.hash);
    out.push(tag);
    out.push(side as u8);
    snapshot::put_row(out, &group.key);
    snapshot::put_len(out, group.value.iter().filter(|s| select(s)).count());
    for stored in group.value.iter().filter(|s| select(s)) {
        match pruned {
            None => put_owned_row(out, &stored.row),
            Some(keep) => {
                snapshot::put_len(out, keep.len());
                let values = expand(stored.row.row(), keep);
                values.for_each(|value| snapshot::put_value_ref(out, value));
            }
        }
        snapshot::put_i64(out, stored.time);
        snapshot::put_i64(out, stored.upper);
        snapshot::put_i64(out, stored.expires);
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
fn compact<'r, 'k, I: Iterator<Item = ValueRef<'r>> + 'k>(
    values: I,
    keep: &'k [bool],
) -> impl Iterator<Item = ValueRef<'r>> + 'k {
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
        self.sides.iter().map(GroupTable::len).sum()
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(GroupTable::footprint_bytes).sum()
    }

    /// Header: the watermark. One group record per (side, key): the side, the key, then its
    /// rows in arrival order (row, time, upper, expires). The expiry queue is rebuilt from
    /// the rows.
    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut sections = Sections::new(max_parallelism, self.header());
        for (side, table) in self.sides.iter().enumerate() {
            let pruned = self.keep.as_ref().map(|keep| keep[side].as_slice());
            for (_, group) in table.iter() {
                put_group(&mut sections, (RECORD_GROUP, side), group, pruned, |_| true);
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
        for &(side, id) in &changes {
            let side = usize::from(side);
            if let Some(group) = self.sides[side].get(id) {
                let epoch = self.epoch;
                if group.value.iter().any(|s| s.epoch == epoch) {
                    let pruned = self.keep.as_ref().map(|keep| keep[side].as_slice());
                    let record = (RECORD_APPEND, side);
                    put_group(&mut sections, record, group, pruned, |s| s.epoch == epoch);
                }
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
                side @ (0 | 1) => side,
                other => {
                    let reason = format!("join side {other} is not 0 or 1");
                    return Err(snapshot::corrupt(side_at, reason));
                }
            };
            let key = reader.row()?;
            let count = reader.count("stored row")?;
            let mut rows = Waiting::with_capacity(count);
            for _ in 0..count {
                let row = self.restore_row(usize::from(side), &mut reader)?;
                let time = reader.i64("row time")?;
                let upper = reader.i64("row upper bound")?;
                let expires = reader.i64("row expiry")?;
                rows.push(Stored {
                    row,
                    time,
                    upper,
                    expires,
                    epoch: 0,
                });
            }
            if rows.is_empty() {
                continue;
            }
            let mut expiries: Vec<i64> = rows
                .iter()
                .map(|s| s.expires)
                .filter(|&expires| expires != WATERMARK_MAX)
                .collect();
            let table = &mut self.sides[usize::from(side)];
            let id = if tag == RECORD_GROUP {
                table.insert_owned(key, rows)
            } else {
                let id = table.find_or_insert_owned(key, Waiting::new);
                if let Some(group) = table.get_mut(id) {
                    group.value.extend(rows);
                }
                id
            };
            expiries.sort_unstable();
            expiries.dedup();
            for expires in expiries {
                self.expiry.entry(expires).or_default().push((side, id));
            }
        }
        // Rows of an earlier snapshot that expired by this one's watermark.
        self.expire();
        Ok(())
    }
}
