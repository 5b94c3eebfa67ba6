//! Avro payloads: a record schema checked against a pipeline schema, and binary records (bare,
//! or in the Confluent wire format) decoded into rows.
//!
//! The Avro schema must be a record holding every declared field by name (it may hold more,
//! which are decoded and dropped). Types fit as follows (Avro → Wire): `int`, `long` → `i64`;
//! `float`, `double` → `f64`; `boolean` → `bool`; `string`, `enum`, `uuid` → `string`; `bytes`,
//! `fixed` → `bytes`; `timestamp-millis|micros|nanos`, `local-timestamp-*`, `date`, `long` →
//! `timestamp` (milliseconds). A union of `null` and one type fits a nullable field (`T?`) of
//! that type; a non-nullable field needs a type without `null`.

use apache_avro::schema::UnionSchema;
use apache_avro::types::Value as Avro;
use apache_avro::Schema as AvroSchema;

use super::format::{push_timed, FormatError};
use super::schema::{DataType, Schema};
use crate::{BatchBuilder, ValueRef};

/// The header of the Confluent wire format: magic byte 0, then a 4-byte schema id.
const CONFLUENT_HEADER: usize = 5;

/// The longest string or bytes value, and the most items of an array or map, one record may
/// hold. `apache-avro` reserves room for an array's or map's items from the count the record
/// states, before reading them, so the count bounds what a hostile record makes it allocate
/// (the crate's default allows 512 Mi items, tens of GiB). Set once for the process.
pub const MAX_ITEMS: usize = 8 << 20;

/// Decodes Avro binary records into rows of a pipeline schema (see the module docs).
///
/// ```
/// use wire_core::record::avro::AvroReader;
/// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, Value};
///
/// let avro = r#"{"type":"record","name":"r","fields":[
///     {"name":"id","type":"long"},{"name":"name","type":["null","string"]}]}"#;
/// let schema = Schema::new(vec![
///     Field::new("id", DataType::I64),
///     Field::nullable("name", DataType::String),
/// ]);
/// let mut reader = AvroReader::new(avro, &schema, 0, None, false).unwrap();
/// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
/// // id 7 (zig-zag 14), then union branch 1 (zig-zag 2), then "ab".
/// reader.decode_with(0, &[14, 2, 4, b'a', b'b'], &[], &mut builder).unwrap();
/// let batch = builder.finish();
/// let row = batch.view().row(0).to_values();
/// assert_eq!(row, [Value::I64(7), Value::Str("ab".into())]);
/// ```
#[derive(Debug)]
pub struct AvroReader {
    schema: AvroSchema,
    /// For each declared field: its index in the Avro record and how its value converts.
    columns: Vec<Column>,
    event_time: Option<usize>,
    confluent: bool,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    at: usize,
    to: DataType,
}

impl AvroReader {
    /// A reader of records written with `avro_schema` (Avro's JSON schema text) into rows of
    /// `payload`'s fields followed by `extra` fields the caller supplies per record;
    /// `event_time` indexes the whole row. `confluent`: each record starts with the Confluent
    /// header (magic byte 0 and a schema id, which is not checked: the schema is given here).
    ///
    /// # Errors
    /// The schema does not parse or does not fit `payload` (see [`check`]).
    pub fn new(
        avro_schema: &str,
        payload: &Schema,
        extra: usize,
        event_time: Option<usize>,
        confluent: bool,
    ) -> Result<AvroReader, String> {
        apache_avro::util::max_allocation_bytes(MAX_ITEMS);
        let schema = parse(avro_schema)?;
        let columns = fit(&schema, payload)?;
        if let Some(index) = event_time {
            if index >= payload.len() + extra {
                return Err(format!("event time field {index} is not in the row"));
            }
        }
        Ok(AvroReader {
            schema,
            columns,
            event_time,
            confluent,
        })
    }

    /// Decodes one binary record and appends a row of its fields followed by `extra` to `out`.
    /// `line` is the place the caller reports in errors (an offset, a line number).
    ///
    /// # Errors
    /// The bytes are not a record of the schema, leave bytes over, or hold a null for a field
    /// that is not nullable.
    pub fn decode_with(
        &mut self,
        line: u64,
        bytes: &[u8],
        extra: &[ValueRef<'_>],
        out: &mut BatchBuilder,
    ) -> Result<(), FormatError> {
        let fail = |column: Option<usize>, field: Option<&str>, message: String| FormatError {
            line,
            column,
            field: field.map(str::to_string),
            message,
        };
        let mut body = self
            .body(bytes)
            .map_err(|(column, message)| fail(column, None, message))?;
        let start = body.len();
        let value = apache_avro::from_avro_datum(&self.schema, &mut body, None).map_err(|err| {
            fail(
                None,
                None,
                format!("not an Avro record of the schema: {err}"),
            )
        })?;
        if !body.is_empty() {
            let column = bytes.len() - body.len() + 1;
            let message = format!(
                "{} bytes left after the Avro record ({} read)",
                body.len(),
                start - body.len()
            );
            return Err(fail(Some(column), None, message));
        }
        let Avro::Record(mut fields) = value else {
            return Err(fail(None, None, "the Avro value is not a record".into()));
        };
        // Values that need an owned form are converted in place, so the row can borrow them.
        for column in &self.columns {
            let slot = &mut fields[column.at].1;
            if let Avro::Union(_, inner) = slot {
                *slot = std::mem::replace(inner.as_mut(), Avro::Null);
            }
            if let Avro::Uuid(uuid) = slot {
                *slot = Avro::String(uuid.to_string());
            }
        }
        let mut values = Vec::with_capacity(self.columns.len() + extra.len());
        for column in &self.columns {
            let value = convert(&fields[column.at].1, column.to).ok_or_else(|| {
                fail(
                    None,
                    Some(&column.name),
                    "a value of a type the schema check ruled out".into(),
                )
            })?;
            values.push(value);
        }
        values.extend_from_slice(extra);
        push_timed(out, &values, self.event_time).map_err(|message| {
            let field = self.event_time.and_then(|i| self.columns.get(i));
            fail(None, field.map(|c| c.name.as_str()), message)
        })
    }
}

impl AvroReader {
    /// The Avro body of `bytes`: past the Confluent header when there is one, else all; the
    /// error gives the 1-based byte column where known.
    fn body<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], (Option<usize>, String)> {
        if !self.confluent {
            return Ok(bytes);
        }
        if bytes.len() < CONFLUENT_HEADER {
            return Err((
                None,
                format!(
                    "{} bytes: shorter than the Confluent header (magic byte and schema id)",
                    bytes.len()
                ),
            ));
        }
        if bytes[0] != 0 {
            return Err((
                Some(1),
                format!(
                    "not the Confluent wire format: magic byte {}, expected 0",
                    bytes[0]
                ),
            ));
        }
        Ok(&bytes[CONFLUENT_HEADER..])
    }
}

/// Parses Avro schema text.
///
/// # Errors
/// The text is not an Avro schema.
pub fn parse(avro_schema: &str) -> Result<AvroSchema, String> {
    AvroSchema::parse_str(avro_schema).map_err(|err| format!("not an Avro schema: {err}"))
}

/// Checks that the Avro schema text fits `payload` (see the module docs).
///
/// # Errors
/// What does not fit: a missing field, a type that does not convert, a nullable union for a
/// field that is not nullable, a schema that is not a record.
pub fn check(avro_schema: &str, payload: &Schema) -> Result<(), String> {
    fit(&parse(avro_schema)?, payload).map(|_| ())
}

fn fit(schema: &AvroSchema, payload: &Schema) -> Result<Vec<Column>, String> {
    let AvroSchema::Record(record) = schema else {
        return Err("the Avro schema must be a record".into());
    };
    let mut columns = Vec::with_capacity(payload.len());
    for field in payload.fields() {
        let Some(at) = record.fields.iter().position(|f| f.name == field.name) else {
            let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(format!(
                "field `{}` is not in the Avro record `{}` (its fields: {})",
                field.name,
                record.name.name,
                names.join(", ")
            ));
        };
        let avro = &record.fields[at].schema;
        let (inner, nullable) = match avro {
            AvroSchema::Union(union) => unwrap_union(union)
                .map_err(|message| format!("field `{}`: the Avro type is {message}", field.name))?,
            other => (other, false),
        };
        if nullable && !field.nullable {
            return Err(format!(
                "field `{}`: the Avro type is a union with null but the field is not nullable \
                 (declare it `{}?`)",
                field.name, field.data_type
            ));
        }
        if !fits(inner, field.data_type) {
            return Err(format!(
                "field `{}`: Avro type {} does not fit {}{}",
                field.name,
                kind_name(inner),
                field.data_type,
                match field.data_type {
                    DataType::I64 => " (int or long)",
                    DataType::F64 => " (float or double)",
                    DataType::Bool => " (boolean)",
                    DataType::String => " (string, enum or uuid)",
                    DataType::Bytes => " (bytes or fixed)",
                    _ => " (a timestamp logical type, date or long)",
                }
            ));
        }
        columns.push(Column {
            name: field.name.clone(),
            at,
            to: field.data_type,
        });
    }
    Ok(columns)
}

/// The one non-null branch of a union, and whether `null` is a branch.
fn unwrap_union(union: &UnionSchema) -> Result<(&AvroSchema, bool), String> {
    let variants = union.variants();
    let nullable = variants.iter().any(|v| matches!(v, AvroSchema::Null));
    let mut others = variants.iter().filter(|v| !matches!(v, AvroSchema::Null));
    match (others.next(), others.next()) {
        (Some(one), None) => Ok((one, nullable)),
        (None, _) => Err("a union of null only".into()),
        (Some(_), Some(_)) => {
            Err("a union of several non-null types, which no Wire type holds".into())
        }
    }
}

fn fits(avro: &AvroSchema, to: DataType) -> bool {
    use AvroSchema as S;
    match to {
        DataType::I64 => matches!(avro, S::Int | S::Long),
        DataType::F64 => matches!(avro, S::Float | S::Double),
        DataType::Bool => matches!(avro, S::Boolean),
        DataType::String => matches!(avro, S::String | S::Enum(_) | S::Uuid),
        DataType::Bytes => matches!(avro, S::Bytes | S::Fixed(_)),
        DataType::Timestamp => matches!(
            avro,
            S::Long
                | S::Date
                | S::TimestampMillis
                | S::TimestampMicros
                | S::TimestampNanos
                | S::LocalTimestampMillis
                | S::LocalTimestampMicros
                | S::LocalTimestampNanos
        ),
    }
}

fn kind_name(avro: &AvroSchema) -> String {
    match avro {
        AvroSchema::Ref { name } => format!("a reference to `{}`", name.name),
        other => {
            let kind = apache_avro::schema::SchemaKind::from(other);
            format!("{kind:?}").to_lowercase()
        }
    }
}

/// The row value of a decoded Avro value; `None` for a type mismatch, which [`fit`] rules out
/// (and a null reaches here only for the nullable fields it allowed).
fn convert(value: &Avro, to: DataType) -> Option<ValueRef<'_>> {
    const DAY_MS: i64 = 86_400_000;
    Some(match (value, to) {
        (Avro::Null, _) => ValueRef::Null,
        (Avro::Int(v), DataType::I64) => ValueRef::I64(i64::from(*v)),
        (Avro::Long(v), DataType::I64) => ValueRef::I64(*v),
        (Avro::Float(v), DataType::F64) => ValueRef::F64(f64::from(*v)),
        (Avro::Double(v), DataType::F64) => ValueRef::F64(*v),
        (Avro::Boolean(v), DataType::Bool) => ValueRef::Bool(*v),
        (Avro::String(v) | Avro::Enum(_, v), DataType::String) => ValueRef::Str(v),
        (Avro::Bytes(v) | Avro::Fixed(_, v), DataType::Bytes) => ValueRef::Bytes(v),
        (Avro::Long(v), DataType::Timestamp)
        | (Avro::TimestampMillis(v), DataType::Timestamp)
        | (Avro::LocalTimestampMillis(v), DataType::Timestamp) => ValueRef::Timestamp(*v),
        (Avro::TimestampMicros(v) | Avro::LocalTimestampMicros(v), DataType::Timestamp) => {
            ValueRef::Timestamp(v.div_euclid(1_000))
        }
        (Avro::TimestampNanos(v) | Avro::LocalTimestampNanos(v), DataType::Timestamp) => {
            ValueRef::Timestamp(v.div_euclid(1_000_000))
        }
        (Avro::Date(days), DataType::Timestamp) => {
            ValueRef::Timestamp(i64::from(*days).saturating_mul(DAY_MS))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
