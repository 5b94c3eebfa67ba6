//! The Kafka source's Avro decoder (bare and Confluent-framed records from a topic) must never
//! panic or allocate without bound on any bytes, and every row it accepts must be a valid row
//! of the schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::record::avro::AvroReader;
use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, ValueRef};

const AVRO: &str = r#"{"type": "record", "name": "r", "fields": [
  {"name": "id", "type": "long"},
  {"name": "small", "type": "int"},
  {"name": "price", "type": ["null", "double"]},
  {"name": "ratio", "type": "float"},
  {"name": "ok", "type": "boolean"},
  {"name": "name", "type": ["string", "null"]},
  {"name": "color", "type": {"type": "enum", "name": "color", "symbols": ["red", "blue"]}},
  {"name": "blob", "type": "bytes"},
  {"name": "tag", "type": {"type": "fixed", "name": "tag", "size": 3}},
  {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
  {"name": "day", "type": {"type": "int", "logicalType": "date"}},
  {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
  {"name": "dropped", "type": {"type": "map", "values": {"type": "array", "items": "long"}}}
]}"#;

fuzz_target!(|data: &[u8]| {
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::new("small", DataType::I64),
        Field::nullable("price", DataType::F64),
        Field::new("ratio", DataType::F64),
        Field::new("ok", DataType::Bool),
        Field::nullable("name", DataType::String),
        Field::new("color", DataType::String),
        Field::new("blob", DataType::Bytes),
        Field::new("tag", DataType::Bytes),
        Field::new("at", DataType::Timestamp),
        Field::new("day", DataType::Timestamp),
        Field::new("uid", DataType::String),
    ]);
    for confluent in [false, true] {
        let mut reader = AvroReader::new(AVRO, &schema, 1, Some(9), confluent).expect("fits");
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        let _ = reader.decode_with(0, data, &[ValueRef::I64(1)], &mut builder);
        let batch = builder.finish();
        let view = batch.view();
        let mut full = schema.fields().to_vec();
        full.push(Field::new("off", DataType::I64));
        assert!(view.check_schema(&Schema::new(full)).is_ok());
        assert!(view.row_count() <= 1);
    }
});
