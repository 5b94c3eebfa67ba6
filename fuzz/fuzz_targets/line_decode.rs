//! The file source's line decoders (JSON lines and CSV) must never panic on any input line, and
//! every row they accept must be a valid row of the schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire_core::record::format::RowReader;
use wire_core::frontend::spec::FileFormat;
use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = Schema::new(vec![
        Field::new("id", DataType::I64),
        Field::nullable("price", DataType::F64),
        Field::new("ok", DataType::Bool),
        Field::nullable("name", DataType::String),
        Field::nullable("blob", DataType::Bytes),
        Field::new("at", DataType::Timestamp),
    ]);
    for format in [FileFormat::JsonLines, FileFormat::Csv] {
        let mut reader = RowReader::new(format, &schema, Some(5), false);
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        let mut lines = text.lines();
        if format == FileFormat::Csv {
            if let Some(header) = lines.next() {
                let mut headed = RowReader::new(format, &schema, Some(5), true);
                if headed.decode_header(header).is_ok() {
                    reader = headed;
                }
            }
        }
        for (index, line) in lines.enumerate() {
            let _ = reader.decode_line(index as u64 + 1, line, &mut builder);
        }
        let batch = builder.finish();
        let view = batch.view();
        assert!(view.check_schema(&schema).is_ok());
        assert_eq!(wire_core::BatchView::verify(batch.as_bytes()).map(|v| v.row_count()).ok(), Some(view.row_count()));
    }
});
