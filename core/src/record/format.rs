//! Text formats of file sources and sinks: JSON lines and CSV (RFC 4180), one row per line.
//!
//! [`RowWriter`] appends rows to a caller's buffer and never allocates per row; [`RowReader`]
//! decodes one line into one row of a [`BatchBuilder`], reusing its scratch buffers between
//! lines. Both are pure (no IO) and live on the one data core that runs the source or sink.
//! Timestamps are RFC 3339 UTC strings with milliseconds, converted here without a date crate.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value as JsonValue;

use crate::frontend::spec::FileFormat;
use crate::record::batch::{BatchBuilder, BatchView};
use crate::record::row::{ArchivedRow, ArchivedValue, ValueRef};
use crate::record::schema::{DataType, Field, Schema};
pub use crate::time::{format_rfc3339, parse_rfc3339};

/// Writes rows as text lines: JSON objects or CSV records, one per line.
///
/// JSON lines write `{"name":value,...}` in schema order. Strings escape `"`, `\` and control
/// characters (`\n`, `\r`, `\t`, `\b`, `\f` in short form, the rest as `\u00XX`) and keep other
/// UTF-8 as is; floats use the shortest round-tripping form, with NaN and infinities as `null`;
/// bytes are standard base64 strings; timestamps are RFC 3339 UTC strings with milliseconds.
/// CSV writes the same scalars, quotes fields holding a comma, quote, CR or LF (doubling quotes)
/// and writes null as an empty field, so empty strings and bytes are written as `""`.
/// CSV floats keep `NaN`, `inf` and `-inf`, which the reader parses back.
/// Timestamps whose year falls outside 0000–9999 are written as epoch milliseconds.
///
/// ```
/// use wire_core::record::format::RowWriter;
/// use wire_core::frontend::spec::FileFormat;
/// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
///
/// let schema = Schema::new(vec![
///     Field::new("id", DataType::I64),
///     Field::nullable("name", DataType::String),
/// ]);
/// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
/// builder.push(&[ValueRef::I64(1), ValueRef::Str("a,\"b\"")]).unwrap();
/// builder.push(&[ValueRef::I64(2), ValueRef::Null]).unwrap();
/// let batch = builder.finish();
///
/// let mut out = Vec::new();
/// RowWriter::new(FileFormat::JsonLines, &schema).write_batch(&batch.view(), &mut out);
/// assert_eq!(out, b"{\"id\":1,\"name\":\"a,\\\"b\\\"\"}\n{\"id\":2,\"name\":null}\n");
///
/// out.clear();
/// let csv = RowWriter::new(FileFormat::Csv, &schema);
/// csv.header(&mut out);
/// csv.write_batch(&batch.view(), &mut out);
/// assert_eq!(out, b"id,name\n1,\"a,\"\"b\"\"\"\n2,\n");
/// ```
#[derive(Debug, Clone)]
pub struct RowWriter {
    format: FileFormat,
    /// JSON: `{"name":` for the first field and `,"name":` for the others, escaped once here.
    prefixes: Vec<Box<[u8]>>,
    /// CSV: the header line, newline included. JSON lines: empty.
    header: Vec<u8>,
    timestamps_as_millis: bool,
}

/// Reads text lines into rows: JSON objects or CSV records, one per line.
///
/// JSON lines: each line is one flat object. Keys are matched to schema fields by name and
/// keys the schema does not name are ignored. A missing or `null` field reads as null when the
/// field is nullable and is an error otherwise. `i64` takes JSON integers only (no fractions,
/// nothing out of range), `f64` any number, `bytes` a standard base64 string, `timestamp` an
/// integer (epoch milliseconds) or an RFC 3339 string.
///
/// CSV (RFC 4180): each record must fit on one line; a quoted field that runs past the end of
/// the line is an error. With `csv_header`, the first line goes to [`RowReader::decode_header`],
/// which maps columns to fields by name in any order; otherwise columns are the schema's fields
/// in order. An empty unquoted field reads as null for nullable fields, as an empty string or
/// empty bytes for non-nullable `string` and `bytes` fields, and is an error otherwise. A
/// quoted empty field (`""`) is an empty string or empty bytes. Booleans are `true` or `false`
/// (any case); timestamps are epoch milliseconds or RFC 3339.
///
/// A trailing `\n` or `\r\n` is ignored. Blank lines are not skipped: callers that want to skip
/// them do so before calling [`RowReader::decode_line`].
///
/// ```
/// use wire_core::record::format::RowReader;
/// use wire_core::frontend::spec::FileFormat;
/// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, Value};
///
/// let schema = Schema::new(vec![
///     Field::new("id", DataType::I64),
///     Field::new("at", DataType::Timestamp),
/// ]);
/// let mut reader = RowReader::new(FileFormat::JsonLines, &schema, Some(1), false);
/// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
/// reader
///     .decode_line(1, r#"{"id":7,"at":"1970-01-01T00:00:01.5Z","extra":[1]}"#, &mut builder)
///     .unwrap();
/// let err = reader.decode_line(2, r#"{"id":7.5,"at":0}"#, &mut builder).unwrap_err();
/// assert_eq!(err.to_string(), r#"line 2, field "id": expected an integer, found 7.5"#);
///
/// let batch = builder.finish();
/// assert_eq!(batch.header().min_event_time, 1_500);
/// let row = batch.view().row(0).to_values();
/// assert_eq!(row, [Value::I64(7), Value::Timestamp(1_500)]);
/// ```
#[derive(Debug)]
pub struct RowReader {
    format: FileFormat,
    fields: Vec<Field>,
    event_time: Option<usize>,
    header_pending: bool,
    /// CSV: for each field, the record column holding it (`None`: absent, read as null).
    field_columns: Vec<Option<usize>>,
    /// CSV: how many columns each record must have.
    column_count: usize,
    /// CSV: the current line's fields.
    csv_fields: Vec<CsvField>,
    /// Text of quoted CSV fields with doubled quotes, unescaped.
    text: String,
    /// Decoded base64 of the current line's `bytes` fields.
    bytes: Vec<u8>,
    /// Scratch for the current line's values; always empty between calls.
    slots: Vec<Slot<'static>>,
    /// Scratch for the current line's values; always empty between calls.
    values: Vec<ValueRef<'static>>,
}

/// A line that does not decode, with where it went wrong.
///
/// Displays as `line 12, column 7, field "price": expected an integer, found "12.5x"`, leaving
/// out the column or the field when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Line number, as the caller counts it (1-based by convention).
    pub line: u64,
    /// 1-based byte column inside the line, where known.
    pub column: Option<usize>,
    /// The schema field or CSV header column concerned, where known.
    pub field: Option<String>,
    /// What was wrong, lower case, without a trailing period.
    pub message: String,
}

impl RowWriter {
    /// A writer of `schema`'s rows in `format`.
    pub fn new(format: FileFormat, schema: &Schema) -> RowWriter {
        let prefixes = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let mut prefix = Vec::with_capacity(field.name.len() + 4);
                prefix.push(if index == 0 { b'{' } else { b',' });
                write_json_str(&field.name, &mut prefix);
                prefix.push(b':');
                prefix.into_boxed_slice()
            })
            .collect();
        let mut header = Vec::new();
        if format == FileFormat::Csv {
            for (index, field) in schema.fields().iter().enumerate() {
                if index > 0 {
                    header.push(b',');
                }
                write_csv_str(&field.name, &mut header);
            }
            header.push(b'\n');
        }
        RowWriter {
            format,
            prefixes,
            header,
            timestamps_as_millis: false,
        }
    }

    /// Writes timestamps as epoch milliseconds (integers) instead of RFC 3339 strings.
    ///
    /// ```
    /// use wire_core::record::format::RowWriter;
    /// use wire_core::frontend::spec::FileFormat;
    /// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};
    ///
    /// let schema = Schema::new(vec![Field::new("at", DataType::Timestamp)]);
    /// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    /// builder.push(&[ValueRef::Timestamp(-1)]).unwrap();
    /// let batch = builder.finish();
    /// let mut out = Vec::new();
    /// let writer = RowWriter::new(FileFormat::JsonLines, &schema);
    /// writer.write_row(batch.view().row(0), &mut out);
    /// writer.with_timestamps_as_millis(true).write_row(batch.view().row(0), &mut out);
    /// assert_eq!(out, b"{\"at\":\"1969-12-31T23:59:59.999Z\"}\n{\"at\":-1}\n");
    /// ```
    pub fn with_timestamps_as_millis(mut self, timestamps_as_millis: bool) -> RowWriter {
        self.timestamps_as_millis = timestamps_as_millis;
        self
    }

    /// The format this writer writes.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Appends the header: for CSV, the column names line; for JSON lines, nothing.
    pub fn header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header);
    }

    /// Appends `row` as one line, `\n` included.
    ///
    /// The row is read positionally against the schema given to [`RowWriter::new`]; values
    /// past the end of a short row are written as null.
    pub fn write_row(&self, row: &ArchivedRow, out: &mut Vec<u8>) {
        debug_assert_eq!(
            row.len(),
            self.prefixes.len(),
            "row does not match the schema"
        );
        match self.format {
            FileFormat::JsonLines => self.write_json_row(row, out),
            FileFormat::Csv => self.write_csv_row(row, out),
        }
    }

    /// Appends every row of `view`, one line each.
    pub fn write_batch(&self, view: &BatchView<'_>, out: &mut Vec<u8>) {
        for row in view.rows() {
            self.write_row(row, out);
        }
    }

    fn write_json_row(&self, row: &ArchivedRow, out: &mut Vec<u8>) {
        if self.prefixes.is_empty() {
            out.extend_from_slice(b"{}\n");
            return;
        }
        for (index, prefix) in self.prefixes.iter().enumerate() {
            out.extend_from_slice(prefix);
            write_json_value(value_at(row, index), self.timestamps_as_millis, out);
        }
        out.extend_from_slice(b"}\n");
    }

    fn write_csv_row(&self, row: &ArchivedRow, out: &mut Vec<u8>) {
        for index in 0..self.prefixes.len() {
            if index > 0 {
                out.push(b',');
            }
            write_csv_value(value_at(row, index), self.timestamps_as_millis, out);
        }
        out.push(b'\n');
    }
}

impl RowReader {
    /// A reader of `schema`'s rows in `format`.
    ///
    /// `event_time` is the index of the field holding each row's event time (a timestamp or
    /// an `i64` of epoch milliseconds); rows then go through [`BatchBuilder::push_with_time`].
    /// `csv_header` says the first CSV line is a header for [`RowReader::decode_header`].
    ///
    /// # Panics
    ///
    /// If `event_time` is not a field index of `schema`.
    pub fn new(
        format: FileFormat,
        schema: &Schema,
        event_time: Option<usize>,
        csv_header: bool,
    ) -> RowReader {
        if let Some(index) = event_time {
            assert!(
                index < schema.len(),
                "event time field {index} is not in the schema"
            );
        }
        RowReader {
            format,
            fields: schema.fields().to_vec(),
            event_time,
            header_pending: format == FileFormat::Csv && csv_header,
            field_columns: (0..schema.len()).map(Some).collect(),
            column_count: schema.len(),
            csv_fields: Vec::new(),
            text: String::new(),
            bytes: Vec::new(),
            slots: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Whether the next line is a CSV header that must go to [`RowReader::decode_header`].
    pub fn expects_header(&self) -> bool {
        self.header_pending
    }

    /// Reads a CSV header line, mapping its columns to schema fields by name, in any order.
    ///
    /// A column the schema does not name, a repeated column, or a non-nullable field without
    /// a column is an error naming it; fields without a column read as null. The header is
    /// counted as line 1 in errors. For JSON lines this does nothing.
    ///
    /// ```
    /// use wire_core::record::format::RowReader;
    /// use wire_core::frontend::spec::FileFormat;
    /// use wire_core::{DataType, Field, Schema};
    ///
    /// let schema = Schema::new(vec![Field::new("id", DataType::I64)]);
    /// let mut reader = RowReader::new(FileFormat::Csv, &schema, None, true);
    /// let err = reader.decode_header("id,price").unwrap_err();
    /// assert_eq!(err.to_string(), r#"line 1, column 4, field "price": unknown column"#);
    /// ```
    pub fn decode_header(&mut self, line: &str) -> Result<(), FormatError> {
        if self.format != FileFormat::Csv {
            return Ok(());
        }
        let line = trim_line_end(line);
        self.text.clear();
        split_csv(line, &mut self.csv_fields, &mut self.text)
            .map_err(|(column, message)| error(1, Some(column), None, message))?;
        self.field_columns.clear();
        self.field_columns.resize(self.fields.len(), None);
        for (column, raw) in self.csv_fields.iter().enumerate() {
            let name = raw.text(line, &self.text);
            let fail = |message: &str| error(1, Some(raw.column), Some(name), message.into());
            let index = self
                .fields
                .iter()
                .position(|field| field.name == name)
                .ok_or_else(|| fail("unknown column"))?;
            if self.field_columns[index].replace(column).is_some() {
                return Err(fail("repeated column"));
            }
        }
        let mut columns = self.fields.iter().zip(&self.field_columns);
        if let Some((field, _)) =
            columns.find(|(field, column)| column.is_none() && !field.nullable)
        {
            let message = "no column for this non-nullable field".to_owned();
            return Err(error(1, None, Some(&field.name), message));
        }
        self.column_count = self.csv_fields.len();
        self.header_pending = false;
        Ok(())
    }

    /// A reader whose rows are `payload`'s fields decoded from a line, then `extra` fields the
    /// caller gives with each line ([`RowReader::decode_with`], like a Kafka record's
    /// metadata). `event_time` indexes the whole row.
    ///
    /// # Panics
    ///
    /// If `event_time` is not below `payload.len() + extra`.
    pub fn with_extra_fields(
        format: FileFormat,
        payload: &Schema,
        extra: usize,
        event_time: Option<usize>,
    ) -> RowReader {
        let mut reader = RowReader::new(format, payload, None, false);
        if let Some(index) = event_time {
            assert!(
                index < payload.len() + extra,
                "event time field {index} is out of the row"
            );
        }
        reader.event_time = event_time;
        reader
    }

    /// Decodes `line` into one row appended to `out`.
    ///
    /// `line_no` is only used in errors. On error nothing is appended to `out`. When the
    /// reader has an event-time field, a null there is an error.
    pub fn decode_line(
        &mut self,
        line_no: u64,
        line: &str,
        out: &mut BatchBuilder,
    ) -> Result<(), FormatError> {
        self.decode_with(line_no, line, &[], out)
    }

    /// Decodes `line` and appends one row of its fields followed by `extra` to `out` (see
    /// [`RowReader::with_extra_fields`]).
    pub fn decode_with(
        &mut self,
        line_no: u64,
        line: &str,
        extra: &[ValueRef<'_>],
        out: &mut BatchBuilder,
    ) -> Result<(), FormatError> {
        let line = trim_line_end(line);
        self.text.clear();
        self.bytes.clear();
        match self.format {
            FileFormat::JsonLines => {
                let object = parse_json_object(line_no, line)?;
                let mut slots = recycle(std::mem::take(&mut self.slots));
                let result = self.json_slots(line_no, &object, &mut slots);
                let result = result.and_then(|()| self.push_slots(line_no, &slots, extra, out));
                self.slots = recycle(slots);
                result
            }
            FileFormat::Csv => {
                split_csv(line, &mut self.csv_fields, &mut self.text)
                    .map_err(|(column, message)| error(line_no, Some(column), None, message))?;
                let mut slots = recycle(std::mem::take(&mut self.slots));
                let result = self.csv_slots(line_no, line, &mut slots);
                let result = result.and_then(|()| self.push_slots(line_no, &slots, extra, out));
                self.slots = recycle(slots);
                result
            }
        }
    }

    fn json_slots<'a>(
        &mut self,
        line_no: u64,
        object: &'a serde_json::Map<String, JsonValue>,
        slots: &mut Vec<Slot<'a>>,
    ) -> Result<(), FormatError> {
        for field in &self.fields {
            let slot = json_slot(field, object.get(&field.name), &mut self.bytes);
            slots.push(slot.map_err(|message| error(line_no, None, Some(&field.name), message))?);
        }
        Ok(())
    }

    fn csv_slots<'a>(
        &mut self,
        line_no: u64,
        line: &'a str,
        slots: &mut Vec<Slot<'a>>,
    ) -> Result<(), FormatError> {
        if self.csv_fields.len() != self.column_count {
            let column = self.csv_fields.get(self.column_count).map(|raw| raw.column);
            let message = format!(
                "expected {} columns, found {}",
                self.column_count,
                self.csv_fields.len()
            );
            return Err(error(line_no, column, None, message));
        }
        for (field, column) in self.fields.iter().zip(&self.field_columns) {
            let slot = match column.map(|column| self.csv_fields[column]) {
                None => null_slot(field, "missing")
                    .map_err(|message| error(line_no, None, Some(&field.name), message))?,
                Some(raw) => {
                    let fail =
                        |message| error(line_no, Some(raw.column), Some(&field.name), message);
                    match csv_slot(field, raw, line, &self.text, &mut self.bytes).map_err(fail)? {
                        Some(slot) => slot,
                        None => null_slot(field, "empty").map_err(fail)?,
                    }
                }
            };
            slots.push(slot);
        }
        Ok(())
    }

    fn push_slots(
        &mut self,
        line_no: u64,
        slots: &[Slot<'_>],
        extra: &[ValueRef<'_>],
        out: &mut BatchBuilder,
    ) -> Result<(), FormatError> {
        let mut values = recycle(std::mem::take(&mut self.values));
        values.extend(slots.iter().map(|slot| match *slot {
            Slot::Value(value) => value,
            Slot::Text(start, end) => ValueRef::Str(&self.text[start..end]),
            Slot::Bytes(start, end) => ValueRef::Bytes(&self.bytes[start..end]),
        }));
        values.extend_from_slice(extra);
        let result = match self.event_time {
            None => out.push(&values),
            Some(index) => match event_time_ms(values[index]) {
                Ok(ms) => out.push_with_time(&values, ms),
                Err(message) => {
                    self.values = recycle(values);
                    let field = Some(self.fields[index].name.as_str());
                    return Err(error(line_no, None, field, message.into()));
                }
            },
        };
        self.values = recycle(values);
        // The only push error is a full batch; callers flush before `BATCH_BYTES_MAX`.
        result.map_err(|err| error(line_no, None, None, err.to_string()))
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(column) = self.column {
            write!(f, ", column {column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field {field:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FormatError {}

/// A decoded field before its row is assembled: a value borrowing the line (or the parsed
/// JSON), or a range of the reader's own text or bytes arena, which are still growing while
/// the line decodes and so cannot be borrowed yet.
#[derive(Debug, Clone, Copy)]
enum Slot<'a> {
    Value(ValueRef<'a>),
    Text(usize, usize),
    Bytes(usize, usize),
}

/// One field of a CSV record, located in the line or in the unescaped-text arena.
#[derive(Debug, Clone, Copy)]
struct CsvField {
    /// 1-based byte column of the field's first byte (its opening quote if quoted).
    column: usize,
    quoted: bool,
    span: Span,
}

#[derive(Debug, Clone, Copy)]
enum Span {
    Line(usize, usize),
    Arena(usize, usize),
}

impl CsvField {
    fn text<'a>(&self, line: &'a str, arena: &'a str) -> &'a str {
        match self.span {
            Span::Line(start, end) => &line[start..end],
            Span::Arena(start, end) => &arena[start..end],
        }
    }
}

fn error(line: u64, column: Option<usize>, field: Option<&str>, message: String) -> FormatError {
    FormatError {
        line,
        column,
        field: field.map(str::to_owned),
        message,
    }
}

/// Empties `vec` and hands back its allocation for another element type of the same layout
/// (here: the same type at another lifetime), which in-place collection reuses.
fn recycle<T, U>(mut vec: Vec<T>) -> Vec<U> {
    vec.clear();
    vec.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

fn value_at(row: &ArchivedRow, index: usize) -> ValueRef<'_> {
    row.get(index)
        .map_or(ValueRef::Null, ArchivedValue::as_value_ref)
}

fn trim_line_end(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn write_json_value(value: ValueRef<'_>, timestamps_as_millis: bool, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::I64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        ValueRef::F64(v) if v.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        }
        ValueRef::F64(_) => out.extend_from_slice(b"null"),
        ValueRef::Bool(v) => out.extend_from_slice(if v { b"true" } else { b"false" }),
        ValueRef::Str(v) => write_json_str(v, out),
        ValueRef::Bytes(v) => {
            out.push(b'"');
            write_base64(v, out);
            out.push(b'"');
        }
        ValueRef::Timestamp(ms) => match format_rfc3339(ms).filter(|_| !timestamps_as_millis) {
            Some(text) => {
                out.push(b'"');
                out.extend_from_slice(&text);
                out.push(b'"');
            }
            None => out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes()),
        },
    }
}

fn write_csv_value(value: ValueRef<'_>, timestamps_as_millis: bool, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => {}
        ValueRef::I64(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        ValueRef::F64(v) => out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes()),
        ValueRef::Bool(v) => out.extend_from_slice(if v { b"true" } else { b"false" }),
        ValueRef::Str(v) => write_csv_str(v, out),
        ValueRef::Bytes([]) => out.extend_from_slice(b"\"\""),
        ValueRef::Bytes(v) => write_base64(v, out),
        ValueRef::Timestamp(ms) => match format_rfc3339(ms).filter(|_| !timestamps_as_millis) {
            Some(text) => out.extend_from_slice(&text),
            None => out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes()),
        },
    }
}

/// Appends `s` as a JSON string, escaping runs between the bytes that need it.
fn write_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..index]);
        if short.is_empty() {
            let hex = [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]];
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex);
        } else {
            out.extend_from_slice(short);
        }
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Appends `s` as a CSV field, quoted when it holds a comma, quote, CR or LF, or is empty
/// (so that it reads back as an empty string rather than null).
fn write_csv_str(s: &str, out: &mut Vec<u8>) {
    let plain = !s.is_empty() && !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if plain {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for (index, part) in s.split('"').enumerate() {
        if index > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.as_bytes());
    }
    out.push(b'"');
}

fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).expect("bytes value too large for base64");
    out.resize(start + len, 0);
    let written = STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    debug_assert_eq!(written, len);
}

fn parse_json_object(
    line_no: u64,
    line: &str,
) -> Result<serde_json::Map<String, JsonValue>, FormatError> {
    serde_json::from_str(line).map_err(|err| {
        // serde_json appends " at line L column C"; the column goes in its own field.
        let mut message = err.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        let column = Some(err.column()).filter(|&column| column > 0);
        error(line_no, column, None, message)
    })
}

fn json_slot<'a>(
    field: &Field,
    value: Option<&'a JsonValue>,
    bytes: &mut Vec<u8>,
) -> Result<Slot<'a>, String> {
    let value = match value {
        None => return null_slot(field, "missing"),
        Some(JsonValue::Null) => return null_slot(field, "null"),
        Some(value) => value,
    };
    let wrong = || mismatch(field.data_type, truncate(&value.to_string()));
    let value = match (field.data_type, value) {
        (DataType::I64, JsonValue::Number(n)) => ValueRef::I64(n.as_i64().ok_or_else(wrong)?),
        (DataType::F64, JsonValue::Number(n)) => ValueRef::F64(n.as_f64().ok_or_else(wrong)?),
        (DataType::Bool, JsonValue::Bool(v)) => ValueRef::Bool(*v),
        (DataType::String, JsonValue::String(v)) => ValueRef::Str(v),
        (DataType::Bytes, JsonValue::String(v)) => {
            return decode_base64(v, bytes).map_err(|reason| format!("{}: {reason}", wrong()));
        }
        (DataType::Timestamp, JsonValue::Number(n)) => {
            ValueRef::Timestamp(n.as_i64().ok_or_else(wrong)?)
        }
        (DataType::Timestamp, JsonValue::String(v)) => ValueRef::Timestamp(
            parse_rfc3339(v).map_err(|reason| format!("{}: {reason}", wrong()))?,
        ),
        _ => return Err(wrong()),
    };
    Ok(Slot::Value(value))
}

/// Splits one CSV line into `fields`, unescaping quoted fields with doubled quotes into
/// `text`. Errors carry a 1-based byte column.
fn split_csv(
    line: &str,
    fields: &mut Vec<CsvField>,
    text: &mut String,
) -> Result<(), (usize, String)> {
    fields.clear();
    let bytes = line.as_bytes();
    let mut pos = 0;
    loop {
        let column = pos + 1;
        if bytes.get(pos) == Some(&b'"') {
            let (span, next) = split_quoted(line, pos, text)?;
            fields.push(CsvField {
                column,
                quoted: true,
                span,
            });
            pos = next;
        } else {
            let end = bytes[pos..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |offset| pos + offset);
            if let Some(offset) = bytes[pos..end].iter().position(|&b| b == b'"') {
                return Err((pos + offset + 1, "quote inside an unquoted field".into()));
            }
            fields.push(CsvField {
                column,
                quoted: false,
                span: Span::Line(pos, end),
            });
            pos = end;
        }
        match bytes.get(pos) {
            None => return Ok(()),
            Some(b',') => pos += 1,
            Some(_) => return Err((pos + 1, "expected a comma after a closing quote".into())),
        }
    }
}

/// Reads the quoted field opening at `start`; returns its span and the position after the
/// closing quote.
fn split_quoted(
    line: &str,
    start: usize,
    text: &mut String,
) -> Result<(Span, usize), (usize, String)> {
    let bytes = line.as_bytes();
    let mut pos = start + 1;
    let mut run_start = pos;
    let mut arena_start = None;
    loop {
        let Some(offset) = bytes[pos..].iter().position(|&b| b == b'"') else {
            let message = "unterminated quoted field (a record must fit on one line)";
            return Err((start + 1, message.into()));
        };
        let quote = pos + offset;
        if bytes.get(quote + 1) == Some(&b'"') {
            arena_start.get_or_insert(text.len());
            text.push_str(&line[run_start..=quote]);
            pos = quote + 2;
            run_start = pos;
            continue;
        }
        let span = match arena_start {
            None => Span::Line(start + 1, quote),
            Some(arena_start) => {
                text.push_str(&line[run_start..quote]);
                Span::Arena(arena_start, text.len())
            }
        };
        return Ok((span, quote + 1));
    }
}

/// The slot of one CSV field, or `None` for an empty field that reads as null.
fn csv_slot<'a>(
    field: &Field,
    raw: CsvField,
    line: &'a str,
    arena: &str,
    bytes: &mut Vec<u8>,
) -> Result<Option<Slot<'a>>, String> {
    let text = raw.text(line, arena);
    if text.is_empty() && (field.nullable && !raw.quoted) {
        return Ok(None);
    }
    let value = match field.data_type {
        DataType::String => {
            return Ok(Some(match raw.span {
                Span::Line(start, end) => Slot::Value(ValueRef::Str(&line[start..end])),
                Span::Arena(start, end) => Slot::Text(start, end),
            }))
        }
        DataType::Bytes => {
            let slot = decode_base64(text, bytes);
            return slot
                .map(Some)
                .map_err(|reason| csv_mismatch(field, text, reason));
        }
        _ if text.is_empty() => return Ok(None),
        DataType::I64 => text.parse().map(ValueRef::I64).ok(),
        DataType::F64 => text.parse().map(ValueRef::F64).ok(),
        DataType::Bool => parse_bool(text).map(ValueRef::Bool),
        DataType::Timestamp => {
            let ms = text.parse().or_else(|_| parse_rfc3339(text));
            let ms = ms.map_err(|reason| csv_mismatch(field, text, reason))?;
            Some(ValueRef::Timestamp(ms))
        }
    };
    let value = value.ok_or_else(|| csv_mismatch(field, text, ""))?;
    Ok(Some(Slot::Value(value)))
}

fn csv_mismatch(field: &Field, text: &str, reason: &str) -> String {
    let message = mismatch(field.data_type, &format!("{:?}", truncate(text)));
    if reason.is_empty() {
        message
    } else {
        format!("{message}: {reason}")
    }
}

fn mismatch(data_type: DataType, found: &str) -> String {
    let expected = match data_type {
        DataType::I64 => "an integer",
        DataType::F64 => "a number",
        DataType::Bool => "true or false",
        DataType::String => "a string",
        DataType::Bytes => "a base64 string",
        DataType::Timestamp => "a timestamp (epoch milliseconds or RFC 3339)",
    };
    format!("expected {expected}, found {found}")
}

/// At most 40 characters of `text`, for error messages about long values.
fn truncate(text: &str) -> &str {
    text.char_indices()
        .nth(40)
        .map_or(text, |(end, _)| &text[..end])
}

fn null_slot(field: &Field, what: &str) -> Result<Slot<'static>, String> {
    if field.nullable {
        Ok(Slot::Value(ValueRef::Null))
    } else {
        Err(format!("{what} value for a non-nullable field"))
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Decodes standard base64 onto the end of `bytes` and returns the slot for that range.
fn decode_base64(text: &str, bytes: &mut Vec<u8>) -> Result<Slot<'static>, &'static str> {
    let start = bytes.len();
    match STANDARD.decode_vec(text, bytes) {
        Ok(()) => Ok(Slot::Bytes(start, bytes.len())),
        Err(_) => {
            bytes.truncate(start);
            Err("invalid base64")
        }
    }
}

/// Appends `values` as one row, timed by field `event_time` when given (a timestamp or an
/// integer of milliseconds). The error says why the row was not appended: a null or
/// non-temporal event time, or a full batch (callers flush before `BATCH_BYTES_MAX`).
pub fn push_timed(
    out: &mut BatchBuilder,
    values: &[ValueRef<'_>],
    event_time: Option<usize>,
) -> Result<(), String> {
    let pushed = match event_time {
        None => out.push(values),
        Some(index) => out.push_with_time(values, event_time_ms(values[index])?),
    };
    pushed.map_err(|err| err.to_string())
}

fn event_time_ms(value: ValueRef<'_>) -> Result<i64, &'static str> {
    match value {
        ValueRef::Timestamp(ms) | ValueRef::I64(ms) => Ok(ms),
        ValueRef::Null => Err("null event time"),
        _ => Err("event time is neither a timestamp nor an integer"),
    }
}

#[cfg(test)]
mod tests;
