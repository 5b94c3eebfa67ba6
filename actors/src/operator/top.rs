//! Top-N per group: the first `n` rows by an order, kept per key (and per window when
//! windowed). A changelog top emits `+I` when a row enters the top n and `-D` when it leaves;
//! a windowed top emits each window's rows once, when the watermark closes the window.
//!
//! A row is compared against the group's buffer with its order datums read in place; only a
//! row that enters the buffer is copied out of its batch.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use wire_core::frontend::expr::{Datum, Expr};
use wire_core::frontend::plan::{TopMode, TopPlan};
use wire_core::time::watermark::WATERMARK_MIN;
use wire_core::time::window::{align_down, expired, fires};
use wire_core::{ArchivedRow, Batch, BatchView, OwnedRow, Value, ValueRef};

use super::table::key_hash;
use wire_core::state::snapshot;
use wire_core::state::snapshot::Section;
use wire_core::state::StateError;

use super::{
    open_section, put_owned_row, read_owned_row, row_time, Clock, GroupTable, Output, Sections,
    Stateful, RECORD_GROUP, RECORD_WINDOW_GROUP,
};
use wire_core::state::total_cmp as cmp_ref;

/// A `top` operator instance.
pub(crate) struct Top {
    n: usize,
    order: Vec<Expr>,
    descending: Vec<bool>,
    keys: Vec<Expr>,
    with_ties: bool,
    mode: TopMode,
    clock: Option<Clock>,
    /// Changelog mode: the buffers by group.
    groups: GroupTable<Buffer>,
    /// Windowed modes: window end → buffers by group.
    windows: BTreeMap<i64, GroupTable<Buffer>>,
    watermark: i64,
}

#[derive(Default)]
struct Buffer {
    /// Best first.
    rows: Vec<Entry>,
}

struct Entry {
    order: Box<[Value]>,
    row: OwnedRow,
}

/// A row's key or order datums, read in place.
type Datums<'a> = smallvec::SmallVec<[Datum<'a>; 4]>;

/// What an insert did.
struct Change {
    inserted: Option<usize>,
    evicted: Vec<Entry>,
}

impl Top {
    pub(crate) fn new(plan: &TopPlan) -> Top {
        let clock = match &plan.mode {
            TopMode::Window(window) => Some(Clock::new(window.time, plan.time)),
            _ => None,
        };
        Top {
            n: plan.n,
            order: plan.order_by.iter().map(|(e, _)| e.clone()).collect(),
            descending: plan.order_by.iter().map(|(_, d)| *d).collect(),
            keys: plan.keys.clone(),
            with_ties: plan.with_ties,
            mode: plan.mode.clone(),
            clock,
            groups: GroupTable::default(),
            windows: BTreeMap::new(),
            watermark: WATERMARK_MIN,
        }
    }

    /// The window end a row belongs to, or `Err(time)` when it is late.
    fn window_end(&self, row: &ArchivedRow, now_ms: i64) -> Result<Option<i64>, Option<i64>> {
        match &self.mode {
            TopMode::Changelog => Ok(None),
            TopMode::Window(window) => {
                let clock = self.clock.unwrap_or(Clock::Processing);
                let ts = clock.time_of(row, now_ms).ok_or(None)?;
                let size = window.kind.size_ms();
                let end = align_down(ts, size).saturating_add(size);
                if expired(end, window.allowed_lateness_ms, self.watermark) {
                    return Err(Some(ts));
                }
                Ok(Some(end))
            }
            TopMode::InputWindow { window_end } => {
                let time = wire_core::time::window::TimeAttr {
                    field: *window_end,
                    offset_ms: 0,
                };
                let end = row_time(row, time).ok_or(None)?;
                if fires(end, self.watermark) {
                    return Err(Some(end - 1));
                }
                Ok(Some(end))
            }
        }
    }

    fn offer(
        &mut self,
        view: &BatchView<'_>,
        index: usize,
        end: Option<i64>,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let row = view.row(index);
        let key: Datums<'_> = self.keys.iter().map(|e| e.eval(row)).collect();
        let order: Datums<'_> = self.order.iter().map(|e| e.eval(row)).collect();
        let hash = key_hash(&key);
        let table = match end {
            Some(end) => self.windows.entry(end).or_default(),
            None => &mut self.groups,
        };
        let (id, _) = table.find_or_insert(hash, &key, Buffer::default);
        let Some(group) = table.get_mut(id) else {
            return Ok(());
        };
        let change = insert(
            &mut group.value,
            &order,
            (view, index),
            &self.descending,
            self.n,
            self.with_ties,
        );
        if end.is_none() {
            for evicted in &change.evicted {
                push_row(out, Some("-D"), &evicted.row, None, None)?;
            }
            if let Some(at) = change.inserted {
                push_row(out, Some("+I"), &group.value.rows[at].row, None, None)?;
            }
        }
        Ok(())
    }

    fn fire(&mut self, out: &mut Output) -> Result<(), wire_core::Error> {
        let watermark = self.watermark;
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            if !fires(end, watermark) {
                break;
            }
            let table = entry.remove();
            let window = match &self.mode {
                TopMode::Window(window) => Some((end - window.kind.size_ms(), end)),
                _ => None,
            };
            // Rows carry time `end - 1`, so they are on time downstream.
            for (_, group) in table.iter() {
                for entry in &group.value.rows {
                    push_row(out, None, &entry.row, window, Some(end - 1))?;
                }
            }
        }
        Ok(())
    }
}

impl Stateful for Top {
    fn on_batch(
        &mut self,
        batch: &Batch,
        _port: usize,
        now_ms: i64,
        out: &mut Output,
    ) -> Result<(), wire_core::Error> {
        let view = batch.view();
        for index in 0..view.row_count() {
            match self.window_end(view.row(index), now_ms) {
                Ok(end) => self.offer(&view, index, end, out)?,
                Err(time) => out.push_late(&view, index, time)?,
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        let processing = matches!(self.clock, Some(Clock::Processing));
        if processing && watermark != i64::MAX {
            return Ok(());
        }
        self.watermark = self.watermark.max(watermark);
        self.fire(out)
    }

    fn next_timer(&self) -> Option<i64> {
        match self.clock {
            Some(Clock::Processing) => self.windows.keys().next().copied(),
            _ => None,
        }
    }

    fn on_timer(&mut self, now_ms: i64, out: &mut Output) -> Result<(), wire_core::Error> {
        self.watermark = self.watermark.max(now_ms.saturating_sub(1));
        self.fire(out)
    }

    fn groups(&self) -> usize {
        self.groups.len() + self.windows.values().map(|t| t.len()).sum::<usize>()
    }

    fn state_bytes(&self) -> usize {
        let windows: usize = self.windows.values().map(|t| t.footprint_bytes()).sum();
        self.groups.footprint_bytes() + windows
    }

    fn snapshot(&mut self, max_parallelism: u32) -> Result<Vec<Section>, String> {
        let mut header = Vec::new();
        snapshot::put_i64(&mut header, self.watermark);
        let mut sections = Sections::new(max_parallelism, header);
        let tables = std::iter::once((None, &self.groups))
            .chain(self.windows.iter().map(|(end, table)| (Some(*end), table)));
        for (end, table) in tables {
            for (_, group) in table.iter() {
                let out = sections.of_hash(group.hash);
                match end {
                    None => out.push(RECORD_GROUP),
                    Some(end) => {
                        out.push(RECORD_WINDOW_GROUP);
                        snapshot::put_i64(out, end);
                    }
                }
                snapshot::put_row(out, &group.key);
                snapshot::put_len(out, group.value.rows.len());
                for entry in &group.value.rows {
                    snapshot::put_row(out, &entry.order);
                    put_owned_row(out, &entry.row);
                }
            }
        }
        Ok(sections.finish())
    }

    fn restore(&mut self, section: &Section) -> Result<(), StateError> {
        let mut reader = open_section(section)?;
        self.watermark = self.watermark.max(reader.i64("watermark")?);
        while !reader.is_empty() {
            let at = reader.offset();
            let end = match reader.u8("record")? {
                RECORD_GROUP => None,
                RECORD_WINDOW_GROUP => Some(reader.i64("window end")?),
                tag => return Err(snapshot::corrupt(at, format!("unknown record {tag}"))),
            };
            let key = reader.row()?;
            let count = reader.count("row")?;
            let mut buffer = Buffer::default();
            for _ in 0..count {
                let order = reader.row()?;
                let row = read_owned_row(&mut reader)?;
                buffer.rows.push(Entry { order, row });
            }
            let table = match end {
                Some(end) => self.windows.entry(end).or_default(),
                None => &mut self.groups,
            };
            table.insert_owned(key, buffer);
        }
        Ok(())
    }
}

/// Compares a candidate's order datums with a stored entry's: `Less` when the candidate
/// comes first.
fn cmp_order(candidate: &[Datum<'_>], stored: &[Value], descending: &[bool]) -> Ordering {
    for ((a, b), desc) in candidate.iter().zip(stored).zip(descending) {
        let ordering = cmp_ref(a.as_value_ref(), b.as_ref());
        let ordering = if *desc { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn cmp_entries(a: &[Value], b: &[Value], descending: &[bool]) -> Ordering {
    for ((a, b), desc) in a.iter().zip(b).zip(descending) {
        let ordering = cmp_ref(a.as_ref(), b.as_ref());
        let ordering = if *desc { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Offers a row to a buffer: it goes after the rows that are as good, and the buffer keeps
/// `n` rows (plus the rows tied with the n-th, with ties).
fn insert(
    buffer: &mut Buffer,
    order: &[Datum<'_>],
    (view, index): (&BatchView<'_>, usize),
    descending: &[bool],
    n: usize,
    with_ties: bool,
) -> Change {
    let rows = &mut buffer.rows;
    // A full buffer takes a row only if it is better than its n-th (or as good, with ties):
    // one comparison turns most rows away.
    let admitted = match rows.get(n.wrapping_sub(1)) {
        Some(nth) if rows.len() >= n => {
            let ordering = cmp_order(order, &nth.order, descending);
            ordering == Ordering::Less || (with_ties && ordering == Ordering::Equal)
        }
        _ => true,
    };
    if !admitted {
        return Change {
            inserted: None,
            evicted: Vec::new(),
        };
    }
    let pos = rows.partition_point(|e| cmp_order(order, &e.order, descending) != Ordering::Less);
    let entry = Entry {
        order: order.iter().map(super::to_value).collect(),
        row: OwnedRow::copy_of(view, index),
    };
    rows.insert(pos, entry);
    let keep = if with_ties && rows.len() > n {
        let nth = rows[n - 1].order.clone();
        n + rows[n..]
            .iter()
            .take_while(|e| cmp_entries(&e.order, &nth, descending) == Ordering::Equal)
            .count()
    } else {
        n.min(rows.len())
    };
    let evicted: Vec<Entry> = rows.drain(keep..).collect();
    let inserted = (pos < rows.len()).then_some(pos);
    Change { inserted, evicted }
}

/// Appends `[op,] row [, window_start, window_end]` with event time `time`.
fn push_row(
    out: &mut Output,
    op: Option<&str>,
    row: &OwnedRow,
    window: Option<(i64, i64)>,
    time: Option<i64>,
) -> Result<(), wire_core::Error> {
    let row = row.row();
    let mut values: Vec<ValueRef<'_>> = Vec::with_capacity(row.len() + 3);
    if let Some(op) = op {
        values.push(ValueRef::Str(op));
    }
    values.extend(row.values().iter().map(|v| v.as_value_ref()));
    if let Some((start, end)) = window {
        values.push(ValueRef::Timestamp(start));
        values.push(ValueRef::Timestamp(end));
    }
    out.push(&values, time)
}
