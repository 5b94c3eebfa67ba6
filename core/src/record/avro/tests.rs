use apache_avro::types::Value as Avro;

use super::*;
use crate::record::schema::Field;
use crate::{PartitionId, StreamId, Value};

const ALL: &str = r#"{"type":"record","name":"bid","fields":[
    {"name":"id","type":"long"},
    {"name":"small","type":"int"},
    {"name":"price","type":["null","double"]},
    {"name":"ok","type":"boolean"},
    {"name":"name","type":"string"},
    {"name":"color","type":{"type":"enum","name":"color","symbols":["red","blue"]}},
    {"name":"blob","type":"bytes"},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"ignored","type":{"type":"array","items":"long"}}
]}"#;

fn schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("small", DataType::I64),
        Field::nullable("price", DataType::F64),
        Field::new("ok", DataType::Bool),
        Field::new("name", DataType::String),
        Field::new("color", DataType::String),
        Field::nullable("blob", DataType::Bytes),
        Field::new("at", DataType::Timestamp),
    ])
}

fn encode(price: Option<f64>) -> Vec<u8> {
    let avro = parse(ALL).unwrap();
    let record = Avro::Record(vec![
        ("id".into(), Avro::Long(-7)),
        ("small".into(), Avro::Int(3)),
        (
            "price".into(),
            match price {
                None => Avro::Union(0, Box::new(Avro::Null)),
                Some(p) => Avro::Union(1, Box::new(Avro::Double(p))),
            },
        ),
        ("ok".into(), Avro::Boolean(true)),
        ("name".into(), Avro::String("ann".into())),
        ("color".into(), Avro::Enum(1, "blue".into())),
        ("blob".into(), Avro::Bytes(vec![0, 255])),
        ("at".into(), Avro::TimestampMicros(1_500_999)),
        ("ignored".into(), Avro::Array(vec![Avro::Long(1)])),
    ]);
    apache_avro::to_avro_datum(&avro, record).unwrap()
}

fn rows(reader: &mut AvroReader, records: &[Vec<u8>]) -> Vec<Vec<Value>> {
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    for (i, record) in records.iter().enumerate() {
        reader
            .decode_with(
                i as u64,
                record,
                &[ValueRef::I64(40 + i as i64)],
                &mut builder,
            )
            .unwrap();
    }
    let batch = builder.finish();
    let view = batch.view();
    (0..view.row_count())
        .map(|i| view.row(i).to_values())
        .collect()
}

#[test]
fn decodes_every_type_with_extra_fields_and_event_time() {
    let mut reader = AvroReader::new(ALL, &schema(), 1, Some(7), false).unwrap();
    let got = rows(&mut reader, &[encode(Some(2.5)), encode(None)]);
    let first = vec![
        Value::I64(-7),
        Value::I64(3),
        Value::F64(2.5),
        Value::Bool(true),
        Value::Str("ann".into()),
        Value::Str("blue".into()),
        Value::Bytes(vec![0, 255]),
        Value::Timestamp(1_500),
        Value::I64(40),
    ];
    assert_eq!(got[0], first);
    assert_eq!(got[1][2], Value::Null);
    assert_eq!(got[1][8], Value::I64(41));
}

#[test]
fn confluent_header_is_skipped_and_checked() {
    let mut reader = AvroReader::new(ALL, &schema(), 1, None, true).unwrap();
    let mut framed = vec![0, 0, 0, 0, 42];
    framed.extend(encode(Some(1.0)));
    assert_eq!(rows(&mut reader, &[framed.clone()])[0][0], Value::I64(-7));

    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    framed[0] = 3;
    let err = reader
        .decode_with(9, &framed, &[ValueRef::I64(0)], &mut builder)
        .unwrap_err();
    assert_eq!(err.line, 9);
    assert_eq!(err.column, Some(1));
    assert!(err.message.contains("magic byte 3"), "{err}");
    let err = reader
        .decode_with(9, &[0, 0, 1], &[ValueRef::I64(0)], &mut builder)
        .unwrap_err();
    assert!(
        err.message.contains("shorter than the Confluent header"),
        "{err}"
    );
    assert_eq!(builder.row_count(), 0);
}

#[test]
fn bad_bytes_are_errors_not_rows() {
    let mut reader = AvroReader::new(ALL, &schema(), 1, None, false).unwrap();
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let good = encode(None);
    let extra = [ValueRef::I64(0)];
    let err = reader
        .decode_with(5, &good[..good.len() - 3], &extra, &mut builder)
        .unwrap_err();
    assert!(
        err.message.starts_with("not an Avro record of the schema"),
        "{err}"
    );
    let mut long = good.clone();
    long.extend([1, 2]);
    let err = reader
        .decode_with(6, &long, &extra, &mut builder)
        .unwrap_err();
    assert_eq!(err.column, Some(good.len() + 1));
    assert!(err.message.contains("2 bytes left"), "{err}");
    // A union branch index out of range.
    let mut branch = good.clone();
    branch[2] = 8;
    assert!(reader
        .decode_with(7, &branch, &extra, &mut builder)
        .is_err());
    assert_eq!(builder.row_count(), 0);
    reader.decode_with(8, &good, &extra, &mut builder).unwrap();
    assert_eq!(builder.row_count(), 1);
}

#[test]
fn check_names_what_does_not_fit() {
    let one = |field: Field| Schema::new(vec![field]);
    let err = check(ALL, &one(Field::new("nope", DataType::I64))).unwrap_err();
    assert!(
        err.contains("field `nope` is not in the Avro record `bid` (its fields: id, small"),
        "{err}"
    );
    let err = check(ALL, &one(Field::new("name", DataType::I64))).unwrap_err();
    assert_eq!(
        err,
        "field `name`: Avro type string does not fit i64 (int or long)"
    );
    let err = check(ALL, &one(Field::new("price", DataType::F64))).unwrap_err();
    assert!(
        err.contains("union with null but the field is not nullable (declare it `f64?`)"),
        "{err}"
    );
    let err = check(r#""long""#, &one(Field::new("id", DataType::I64))).unwrap_err();
    assert_eq!(err, "the Avro schema must be a record");
    let err = check("{", &one(Field::new("id", DataType::I64))).unwrap_err();
    assert!(err.starts_with("not an Avro schema"), "{err}");
    let two = r#"{"type":"record","name":"r","fields":[{"name":"x","type":["long","string"]}]}"#;
    let err = check(two, &one(Field::nullable("x", DataType::I64))).unwrap_err();
    assert!(err.contains("several non-null types"), "{err}");
    check(ALL, &schema()).unwrap();
}

/// The fuzz target's schema and seed (fuzz/seeds/avro_decode/record) decode: the seed reaches
/// past the header and through every field.
#[test]
fn the_fuzz_seed_decodes() {
    let target = include_str!("../../../../fuzz/fuzz_targets/avro_decode.rs");
    let start = target.find("r#\"").expect("schema start") + 3;
    let end = start + target[start..].find("\"#").expect("schema end");
    let avro = &target[start..end];
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("uid", DataType::String),
        Field::new("day", DataType::Timestamp),
    ]);
    let mut reader = AvroReader::new(avro, &schema, 0, None, false).unwrap();
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let seed = include_bytes!("../../../../fuzz/seeds/avro_decode/record");
    reader.decode_with(0, seed, &[], &mut builder).unwrap();
    let batch = builder.finish();
    let row = batch.view().row(0).to_values();
    assert_eq!(
        row,
        [
            Value::I64(5),
            Value::Str("123e4567-e89b-12d3-a456-426614174000".into()),
            Value::Timestamp(10 * 86_400_000)
        ]
    );
}
