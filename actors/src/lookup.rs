//! Lookup tables: the static side tables of `lookup` operators, read from their files once
//! when the pipeline starts and shared read-only by every core (like the plan itself).
//!
//! A table is indexed by its key fields; a lookup evaluates the input row's key expressions
//! and appends one output row per matching table row (an inner join).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use wire_core::frontend::expr::Datum;
use wire_core::frontend::plan::{LookupPlan, Operator, Plan};
use wire_core::{
    ArchivedValue, BatchBuilder, OwnedRow, PartitionId, RowReader, StreamId, ValueRef,
};

use crate::operator::{table::key_hash, GroupTable};
use crate::Error;

/// One loaded table.
#[derive(Debug, Default)]
pub struct LookupTable {
    rows: GroupTable<Vec<OwnedRow>>,
}

/// The loaded tables of a plan, by operator index.
pub type LookupTables = HashMap<usize, Arc<LookupTable>>;

/// Loads the table of every `lookup` operator of `plan`.
pub(crate) fn load_all(plan: &Plan) -> Result<LookupTables, Error> {
    let mut tables = HashMap::new();
    for (index, operator) in plan.operators.iter().enumerate() {
        if let Operator::Lookup(lookup) = &operator.op {
            tables.insert(index, Arc::new(load(lookup)?));
        }
    }
    Ok(tables)
}

fn load(plan: &LookupPlan) -> Result<LookupTable, Error> {
    let text = std::fs::read_to_string(&plan.path).map_err(|err| Error::io(&plan.path, err))?;
    let decode_error = |detail: String| Error::Decode {
        path: plan.path.clone(),
        detail,
    };
    let mut reader = RowReader::new(plan.format, &plan.table_schema, None, plan.csv_header);
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let mut table = LookupTable::default();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = number as u64 + 1;
        if reader.expects_header() {
            reader
                .decode_header(line)
                .map_err(|e| decode_error(e.to_string()))?;
            continue;
        }
        reader
            .decode_line(line_no, line, &mut builder)
            .map_err(|e| decode_error(e.to_string()))?;
        if builder.row_count() >= 1024 {
            table.index(&mut builder, &plan.table_keys);
        }
    }
    table.index(&mut builder, &plan.table_keys);
    Ok(table)
}

impl LookupTable {
    /// Moves the rows of `builder` into the table.
    fn index(&mut self, builder: &mut BatchBuilder, key_fields: &[usize]) {
        if builder.is_empty() {
            return;
        }
        let batch = builder.finish();
        let view = batch.view();
        let mut key = Vec::with_capacity(key_fields.len());
        for index in 0..view.row_count() {
            let row = view.row(index);
            key.clear();
            key.extend(
                key_fields
                    .iter()
                    .map(|f| row.get(*f).map_or(Datum::Null, datum)),
            );
            if key.iter().any(|d| matches!(d, Datum::Null)) {
                continue; // A NULL key matches nothing.
            }
            let (id, _) = self.rows.find_or_insert(key_hash(&key), &key, Vec::new);
            if let Some(group) = self.rows.get_mut(id) {
                group.value.push(OwnedRow::copy_of(&view, index));
            }
        }
    }

    /// The table rows whose key equals `key`.
    pub(crate) fn get(&self, key: &[Datum<'_>]) -> &[OwnedRow] {
        self.rows
            .find(key_hash(key), key)
            .and_then(|id| self.rows.get(id))
            .map_or(&[], |group| group.value.as_slice())
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }
}

/// An archived value as a datum borrowing from it.
fn datum(value: &ArchivedValue) -> Datum<'_> {
    match value.as_value_ref() {
        ValueRef::Null => Datum::Null,
        ValueRef::I64(v) => Datum::I64(v),
        ValueRef::F64(v) => Datum::F64(v),
        ValueRef::Bool(v) => Datum::Bool(v),
        ValueRef::Str(v) => Datum::Str(Cow::Borrowed(v)),
        ValueRef::Bytes(v) => Datum::Bytes(Cow::Borrowed(v)),
        ValueRef::Timestamp(v) => Datum::Timestamp(v),
    }
}
