//! Stateful operators: windowed and unbounded aggregates and top-N, each a state machine
//! driven by its task with batches, watermarks and (for processing time) the clock.
//!
//! An instance lives on one core and owns the state of the key groups that core owns; rows
//! reach it already partitioned by its group keys. Results and late rows are appended to an
//! [`Output`], which the task drains downstream after every call. Nothing here awaits.

mod aggregate;
mod flat;
mod join;
mod process;
mod session;
pub(crate) mod table;
mod top;
mod window;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{Operator, Plan};
use wire_core::record::key::key_part_eq;
use wire_core::state::snapshot::Section;
use wire_core::state::snapshot::{self, Reader};
use wire_core::state::StateError;
use wire_core::time::window::{TimeAttr, TimeDomain};
use wire_core::{
    ArchivedRow, Batch, BatchBuilder, BatchView, OwnedRow, PartitionId, StreamId, Value,
};

pub(crate) use table::GroupTable;

/// One stateful operator instance.
pub(crate) trait Stateful {
    /// Applies the rows of `batch`, which arrived on input `port` (0, or 1 for a join's right
    /// input); `now_ms` is the wall clock (processing time).
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error>;

    /// The combined input watermark advanced to `watermark`: fire what it closes.
    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error>;

    /// The wall-clock time at which `on_timer` has work, for processing-time windows.
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached `now_ms`.
    fn on_timer(&mut self, _now_ms: i64, _out: &mut Output) -> Result<(), wire_core::Error> {
        Ok(())
    }

    /// Whether output was cut short because the [`Output`] filled up (see
    /// [`Output::with_limit`]): [`Stateful::resume`] goes on once it is drained. Nothing else
    /// is called on the operator meanwhile.
    fn pending(&self) -> bool {
        false
    }

    /// Goes on with the output [`Stateful::pending`] says was cut short.
    fn resume(&mut self, _out: &mut Output) -> Result<(), wire_core::Error> {
        Ok(())
    }

    /// Groups (keys, or keys × windows) currently held.
    fn groups(&self) -> usize;

    /// Bytes of memory the state takes, estimated cheaply (read after every batch): the
    /// group tables at their capacity; 0 for an operator that does not estimate it.
    fn state_bytes(&self) -> usize {
        0
    }

    /// Copies the state: one sealed snapshot per key group held. An error names why this
    /// operator cannot be checkpointed. An operator that tracks changes starts tracking anew.
    fn snapshot(&mut self, _max_parallelism: u32) -> Result<Vec<Section>, String> {
        Err("its state cannot be checkpointed yet".into())
    }

    /// Restoring will bring sections of `bytes` bytes in all: room for the state may be made
    /// at once.
    fn restore_size(&mut self, _bytes: usize) {}

    /// From now on, note what changes between snapshots, for [`Stateful::snapshot_changes`]
    /// (called when checkpoints are on; an operator that cannot copy only its changes ignores
    /// it).
    fn track_changes(&mut self) {}

    /// Copies only what changed since the previous snapshot (of either kind), one sealed
    /// section per key group with changes, and starts tracking anew; `None` if this operator
    /// does not track its changes (the caller takes a whole snapshot instead). Restoring the
    /// previous snapshot and then these sections gives the current state.
    fn snapshot_changes(&mut self, _max_parallelism: u32) -> Option<Result<Vec<Section>, String>> {
        None
    }

    /// Adds one key group's state from a snapshot [`Stateful::snapshot`] took (of this
    /// operator, possibly on another core or with another core count).
    fn restore(&mut self, _section: &Section) -> Result<(), StateError> {
        Err(snapshot::mismatch(
            0,
            "this operator keeps no checkpointed state".into(),
        ))
    }
}

/// Whether operator `index` of `plan` can be checkpointed: an error names why not.
pub(crate) fn checkpointable(plan: &Plan, index: usize) -> Result<(), String> {
    match build(plan, index) {
        Some(mut operator) => operator.snapshot(plan.settings.max_parallelism).map(|_| ()),
        None => Ok(()),
    }
}

/// Snapshot sections being written: one buffer per key group, each starting with the
/// operator's header (what every section repeats, like the operator's watermark).
pub(crate) struct Sections {
    max_parallelism: u32,
    header: Vec<u8>,
    /// By key group.
    buffers: Vec<Option<Vec<u8>>>,
    /// Capacity each new section's buffer starts with.
    reserve: usize,
}

/// What an operator's last whole-state snapshot weighed, to size the next one's buffers up
/// front: growing them by doubling copied each byte once more and faulted in twice the memory,
/// all while the core is paused.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SnapshotSize {
    groups: usize,
    bytes_per_section: usize,
}

impl SnapshotSize {
    /// The size of `sections`, a snapshot of `groups` groups.
    pub(crate) fn of(sections: &[Section], groups: usize) -> SnapshotSize {
        let bytes: usize = sections.iter().map(|s| s.bytes.len()).sum();
        SnapshotSize {
            groups,
            bytes_per_section: bytes / sections.len().max(1),
        }
    }

    /// Bytes to reserve per section for a snapshot of `groups` groups: the last size scaled
    /// by the change in groups, plus 5%.
    pub(crate) fn reserve_for(&self, groups: usize) -> usize {
        if self.groups == 0 {
            return 0;
        }
        let scaled =
            self.bytes_per_section as u128 * groups as u128 * 21 / (self.groups as u128 * 20);
        scaled.min(usize::MAX as u128) as usize
    }
}

impl Sections {
    pub(crate) fn new(max_parallelism: u32, header: Vec<u8>) -> Sections {
        Sections {
            max_parallelism,
            header,
            buffers: Vec::new(),
            reserve: 0,
        }
    }

    /// Starts each section's buffer with room for `bytes`.
    pub(crate) fn reserving(mut self, bytes: usize) -> Sections {
        self.reserve = bytes;
        self
    }

    /// The buffer of the key group of key hash `hash`.
    pub(crate) fn of_hash(&mut self, hash: u64) -> &mut Vec<u8> {
        let group = wire_core::record::key::key_group(hash, self.max_parallelism) as usize;
        self.buffer(group)
    }

    /// Gives every key group a section, if only with the header.
    pub(crate) fn touch_all(&mut self) {
        for key_group in 0..self.max_parallelism as usize {
            self.buffer(key_group);
        }
    }

    fn buffer(&mut self, key_group: usize) -> &mut Vec<u8> {
        if self.buffers.len() <= key_group {
            self.buffers.resize_with(key_group + 1, || None);
        }
        let (header, reserve) = (&self.header, self.reserve);
        self.buffers[key_group].get_or_insert_with(|| {
            let mut out = snapshot::begin();
            out.reserve(reserve.max(header.len()));
            out.extend_from_slice(header);
            out
        })
    }

    pub(crate) fn finish(self) -> Vec<Section> {
        self.buffers
            .into_iter()
            .enumerate()
            .filter_map(|(key_group, bytes)| {
                Some(Section {
                    key_group: key_group as u32,
                    bytes: snapshot::seal(bytes?).into(),
                })
            })
            .collect()
    }
}

/// A reader over a section's body, after its checksum was verified.
pub(crate) fn open_section(section: &Section) -> Result<Reader<'_>, StateError> {
    snapshot::unseal(&section.bytes).map(Reader::new)
}

/// Section record tags.
pub(crate) const RECORD_GROUP: u8 = 1;
pub(crate) const RECORD_REFIRE: u8 = 2;
pub(crate) const RECORD_WINDOW_GROUP: u8 = 3;
/// A group's state in a delta: replaces the group's state, or adds the group.
pub(crate) const RECORD_UPSERT: u8 = 4;
/// A group deleted since the previous snapshot (a delta).
pub(crate) const RECORD_DELETE: u8 = 5;
/// Rows a group stored since the previous snapshot (a delta): appended to the group.
pub(crate) const RECORD_APPEND: u8 = 6;

/// Appends an owned row's values.
pub(crate) fn put_owned_row(out: &mut Vec<u8>, row: &OwnedRow) {
    snapshot::put_row(out, &row.row().to_values());
}

/// Reads back a row [`put_owned_row`] wrote.
pub(crate) fn read_owned_row(reader: &mut Reader<'_>) -> Result<OwnedRow, StateError> {
    let at = reader.offset();
    let values = reader.row()?;
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    builder
        .push(&values)
        .map_err(|err| snapshot::corrupt(at, err.to_string()))?;
    let batch = builder.finish();
    Ok(OwnedRow::copy_of(&batch.view(), 0))
}

/// Builds the stateful operator `index` of `plan`, or `None` if it is stateless.
pub(crate) fn build(plan: &Plan, index: usize) -> Option<Box<dyn Stateful>> {
    let operator = &plan.operators[index];
    match &operator.op {
        Operator::Aggregate(aggregate) => Some(match &aggregate.window {
            Some(window)
                if matches!(
                    window.kind,
                    wire_core::time::window::WindowKind::Session { .. }
                ) =>
            {
                Box::new(session::SessionAggregate::new(aggregate, window))
            }
            Some(window) => Box::new(window::WindowAggregate::new(aggregate, window)),
            None => Box::new(aggregate::UnboundedAggregate::new(aggregate)),
        }),
        Operator::Top(top) => Some(Box::new(top::Top::new(top))),
        Operator::Join(join) => Some(Box::new(join::Join::new(join))),
        Operator::Process(process) => {
            match process::Process::new(process, plan.settings.max_parallelism) {
                Ok(process) => Some(Box::new(process)),
                // The plan instantiated it once already; a failure now is reported per row.
                Err(err) => Some(Box::new(Failed(Some(err)))),
            }
        }
        _ => None,
    }
}

/// An operator that could not be built: fails at its first batch.
struct Failed(Option<wire_core::Error>);

impl Stateful for Failed {
    fn on_batch(
        &mut self,
        _batch: &Batch,
        _port: usize,
        _now_ms: i64,
        _out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        match self.0.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn on_watermark(&mut self, _watermark: i64, _out: &mut Output) -> Result<(), wire_core::Error> {
        Ok(())
    }

    fn groups(&self) -> usize {
        0
    }
}

/// Where a stateful operator puts result rows and late rows; cut into batches of at most
/// `batch_rows` rows. The batches stay in the process until a WAL append or an exchange seals
/// them, so they carry no checksum (`BatchBuilder::finish_local`).
pub(crate) struct Output {
    main: BatchBuilder,
    late: BatchBuilder,
    /// Finished result batches, in order.
    pub(crate) ready: Vec<Batch>,
    /// Finished late-row batches, in order.
    pub(crate) late_ready: Vec<Batch>,
    /// Rows sent to the late output (or counted as late without one).
    pub(crate) late_rows: u64,
    batch_rows: usize,
    /// Finished result batches after which an operator that can pause (a firing window)
    /// stops and waits to be drained.
    limit: Option<usize>,
}

impl Output {
    /// An empty output sealing batches at `batch_rows` rows.
    pub(crate) fn new(batch_rows: usize) -> Output {
        let builder = || BatchBuilder::with_capacity(StreamId(0), PartitionId(0), 64 << 10);
        Output {
            main: builder(),
            late: builder(),
            ready: Vec::new(),
            late_ready: Vec::new(),
            late_rows: 0,
            batch_rows: batch_rows.max(1),
            limit: None,
        }
    }

    /// Lets operators pause once `batches` result batches are waiting: a window firing for
    /// millions of keys then leaves in pieces, not as one buffered burst.
    pub(crate) fn with_limit(mut self, batches: usize) -> Output {
        self.limit = Some(batches.max(1));
        self
    }

    /// Whether the output holds as many batches as its limit.
    pub(crate) fn full(&self) -> bool {
        self.limit.is_some_and(|limit| self.ready.len() >= limit)
    }

    /// Appends a result row with event time `time_ms`.
    pub(crate) fn push<V: wire_core::AsValueRef>(
        &mut self,
        values: &[V],
        time_ms: Option<i64>,
    ) -> Result<(), wire_core::Error> {
        match time_ms {
            Some(time) => self.main.push_with_time(values, time)?,
            None => self.main.push(values)?,
        }
        if self.main.row_count() >= self.batch_rows {
            self.ready.push(self.main.finish_local());
        }
        Ok(())
    }

    /// Copies row `index` of `view` to the late output.
    pub(crate) fn push_late(
        &mut self,
        view: &BatchView<'_>,
        index: usize,
        time_ms: Option<i64>,
    ) -> Result<(), wire_core::Error> {
        self.late.push_row_of(view, index)?;
        if let Some(time) = time_ms {
            self.late.widen_event_time(time, time);
        }
        self.late_rows += 1;
        if self.late.row_count() >= self.batch_rows {
            self.late_ready.push(self.late.finish_local());
        }
        Ok(())
    }

    /// Seals partly filled batches so the task can send them.
    pub(crate) fn seal(&mut self) {
        if !self.main.is_empty() {
            self.ready.push(self.main.finish_local());
        }
        if !self.late.is_empty() {
            self.late_ready.push(self.late.finish_local());
        }
    }
}

/// A row's event time by `time`, or `None` when the field is NULL.
pub(crate) fn row_time(row: &ArchivedRow, time: TimeAttr) -> Option<i64> {
    let value = row.get(time.field)?;
    let ms = value.as_timestamp().or_else(|| value.as_i64())?;
    Some(ms.saturating_add(time.offset_ms))
}

/// How an operator reads the time of a row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The row's event-time attribute.
    Event(TimeAttr),
    /// The wall clock when the batch arrived.
    Processing,
}

impl Clock {
    pub(crate) fn new(domain: TimeDomain, time: Option<TimeAttr>) -> Clock {
        match (domain, time) {
            (TimeDomain::Event, Some(time)) => Clock::Event(time),
            // The plan refuses event-time windows without event time.
            _ => Clock::Processing,
        }
    }

    pub(crate) fn time_of(&self, row: &ArchivedRow, now_ms: i64) -> Option<i64> {
        match self {
            Clock::Event(time) => row_time(row, *time),
            Clock::Processing => Some(now_ms),
        }
    }
}

/// Evaluates `exprs` over `row` into `out` (cleared first).
// Inlined: q7 ran 4% slower in CPU per event when this stayed a call per row (see
// docs/benchmarks.md, "Core pool: the re-run on a quiet machine").
#[inline]
pub(crate) fn eval_into<'a>(exprs: &'a [Expr], row: &'a ArchivedRow, out: &mut Vec<Datum<'a>>) {
    out.clear();
    out.extend(exprs.iter().map(|e| e.eval(row)));
}

/// An owned copy of a datum.
pub(crate) fn to_value(datum: &Datum<'_>) -> Value {
    match datum {
        Datum::Null => Value::Null,
        Datum::I64(v) => Value::I64(*v),
        Datum::F64(v) => Value::F64(*v),
        Datum::Bool(v) => Value::Bool(*v),
        Datum::Str(v) => Value::Str(v.to_string()),
        Datum::Bytes(v) => Value::Bytes(v.to_vec()),
        Datum::Timestamp(v) => Value::Timestamp(*v),
    }
}

/// Whether `datum` equals the stored `value` as keys ([`key_part_eq`]: same type and value,
/// NULL equals NULL, `0.0` equals `-0.0`, every NaN equals every NaN).
pub(crate) fn datum_eq(datum: &Datum<'_>, value: &Value) -> bool {
    key_part_eq(datum.as_value_ref(), value.as_ref())
}

#[cfg(test)]
mod tests;
