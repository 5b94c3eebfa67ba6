//! Group aggregation without a window: a changelog of updates, one per changed key per batch
//! (windowed aggregation is in `window`).

use std::borrow::{Borrow, Cow};

use smallvec::SmallVec;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::AggregatePlan;
use wire_core::operator::agg::{Acc, AggCall};
use wire_core::{Batch, Value, ValueRef};

use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;

use super::flat::{put_at, AccColumn, Bits, FlatGroups};
use super::table::{key_hash, Key};
use super::{
    eval_into, open_section, Output, Sections, SnapshotSize, Stateful, RECORD_DELETE, RECORD_GROUP,
    RECORD_UPSERT,
};

type Accs = Box<[Acc]>;

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
                    self.groups.discard(id);
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
    // Built on the stack: a window's firing emits a row per key.
    let results: SmallVec<[Datum<'_>; 8]> = aggs
        .iter()
        .zip(accs)
        .map(|(agg, acc)| agg.result(acc.borrow()))
        .collect();
    let mut row: SmallVec<[ValueRef<'_>; 16]> = SmallVec::new();
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
