//! `--output`: the generated stream written as JSON lines or CSV, so another engine (or Wire's
//! `file` source) can read exactly the rows `wire-loadgen` would send.

use std::io::{self, Write};

use wire_core::{BatchBuilder, PartitionId, RowWriter, Schema, StreamId};

use crate::{OutputFormat, RowMaker};

/// What to write: the same split over producers as a live run with these flags.
#[derive(Debug, Clone, Copy)]
pub struct StreamPlan {
    /// `--seed`.
    pub seed: u64,
    /// `--connections`: producer `p` of them makes its share as it would when sending.
    pub producers: u64,
    /// Rows in total; `None` writes until `keep_going` says stop.
    pub rows: Option<u64>,
    /// `--batch-rows`.
    pub batch_rows: usize,
    /// `--rate` in rows per second over all producers; 0 for none.
    pub rate: u64,
    /// The `--timestamp-field` index: it gets the batch's scheduled offset from the start in
    /// nanoseconds (0 without a rate), so the file does not depend on when it was written.
    pub stamp: Option<usize>,
    /// `--keys` and `--event-time` for random rows.
    pub random: crate::RandomOptions,
    /// With `--event-time now`: the clock event time follows, in unix milliseconds, at the
    /// first batch; later batches add their scheduled offset.
    pub clock_start_ms: i64,
}

/// Writes `plan`'s rows of `schema` to `out` in `format`, one batch of each producer in turn,
/// and returns the rows and bytes written. Deterministic: the same plan writes the same bytes.
/// `keep_going` is asked before each round of batches.
pub fn write_stream(
    schema: &Schema,
    plan: &StreamPlan,
    format: OutputFormat,
    out: &mut impl Write,
    mut keep_going: impl FnMut() -> bool,
) -> io::Result<(u64, u64)> {
    let producers = plan.producers.max(1);
    let writer = RowWriter::new(format.file_format(), schema);
    let mut makers: Vec<RowMaker> = (0..producers)
        .map(|p| RowMaker::for_schema(schema, plan.seed, p, producers).with_options(plan.random))
        .collect();
    let mut left: Vec<u64> = (0..producers)
        .map(|p| match plan.rows {
            Some(rows) => rows / producers + u64::from(p < rows % producers),
            None => u64::MAX,
        })
        .collect();
    let mut made = vec![0u64; makers.len()];
    let rate = plan.rate as f64 / producers as f64;
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    let mut text = Vec::with_capacity(1 << 16);
    if format == OutputFormat::Csv {
        writer.header(&mut text);
    }
    let (mut rows_written, mut bytes) = (0u64, 0u64);
    while keep_going() {
        let mut any = false;
        for (p, maker) in makers.iter_mut().enumerate() {
            let rows = left[p].min(plan.batch_rows.max(1) as u64);
            if rows == 0 {
                continue;
            }
            any = true;
            let offset_ns = if rate > 0.0 {
                (made[p] as f64 / rate * 1e9) as i64
            } else {
                0
            };
            maker.set_clock_ms(plan.clock_start_ms + offset_ns / 1_000_000);
            maker
                .fill_stamped(
                    &mut builder,
                    rows as usize,
                    plan.stamp.map(|f| (f, offset_ns)),
                )
                .map_err(io::Error::other)?;
            let batch = builder.finish();
            writer.write_batch(&batch.view(), &mut text);
            out.write_all(&text)?;
            bytes += text.len() as u64;
            text.clear();
            left[p] -= rows;
            made[p] += rows;
            rows_written += rows;
        }
        if !any {
            break;
        }
    }
    if !text.is_empty() {
        // A CSV header with no rows after it.
        out.write_all(&text)?;
        bytes += text.len() as u64;
    }
    out.flush()?;
    Ok((rows_written, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::frontend::spec::FileFormat;
    use wire_core::nexmark::bid_schema;
    use wire_core::{DataType, Field, RowReader};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("sensor", DataType::String),
            Field::nullable("value", DataType::F64),
            Field::new("at", DataType::Timestamp),
            Field::new("sent_at", DataType::I64),
        ])
    }

    /// What the producers would send, concatenated in the file's order.
    fn sent_rows(schema: &Schema, plan: &StreamPlan) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut bytes = Vec::new();
        write_stream(schema, plan, OutputFormat::JsonLines, &mut bytes, || true).unwrap();
        // Rebuild the same rows straight from the makers, producer by producer in turn.
        let producers = plan.producers;
        let mut makers: Vec<RowMaker> = (0..producers)
            .map(|p| RowMaker::for_schema(schema, plan.seed, p, producers))
            .collect();
        let per = plan.rows.unwrap() / producers;
        let rate = plan.rate as f64 / producers as f64;
        for round in 0..per.div_ceil(plan.batch_rows as u64) {
            for maker in makers.iter_mut() {
                let done = round * plan.batch_rows as u64;
                let rows = (per - done).min(plan.batch_rows as u64);
                let offset = (done as f64 / rate * 1e9) as i64;
                let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
                maker
                    .fill_stamped(&mut builder, rows as usize, plan.stamp.map(|f| (f, offset)))
                    .unwrap();
                let batch = builder.finish();
                let view = batch.view();
                for i in 0..view.row_count() {
                    out.push(view.row_bytes(i).to_vec());
                }
            }
        }
        out
    }

    fn read_back(schema: &Schema, format: FileFormat, text: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = RowReader::new(format, schema, None, true);
        let mut rows = Vec::new();
        for (n, line) in std::str::from_utf8(text).unwrap().lines().enumerate() {
            if reader.expects_header() {
                reader.decode_header(line).unwrap();
                continue;
            }
            let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
            reader
                .decode_line(n as u64 + 1, line, &mut builder)
                .unwrap();
            let batch = builder.finish();
            rows.push(batch.view().row_bytes(0).to_vec());
        }
        rows
    }

    #[test]
    fn both_formats_read_back_to_the_rows_that_would_be_sent() {
        let schema = schema();
        let plan = StreamPlan {
            seed: 3,
            producers: 2,
            rows: Some(1000),
            batch_rows: 64,
            rate: 10_000,
            stamp: Some(3),
            random: crate::RandomOptions::default(),
            clock_start_ms: 0,
        };
        let expected = sent_rows(&schema, &plan);
        assert_eq!(expected.len(), 1000);
        for (format, file_format) in [
            (OutputFormat::JsonLines, FileFormat::JsonLines),
            (OutputFormat::Csv, FileFormat::Csv),
        ] {
            let mut text = Vec::new();
            let (rows, bytes) = write_stream(&schema, &plan, format, &mut text, || true).unwrap();
            assert_eq!((rows, bytes), (1000, text.len() as u64));
            let back = read_back(&schema, file_format, &text);
            assert_eq!(back.len(), expected.len(), "{format:?}");
            assert!(
                back == expected,
                "{format:?}: rows differ after the round trip"
            );
            // Deterministic per seed, different for another seed.
            let mut again = Vec::new();
            write_stream(&schema, &plan, format, &mut again, || true).unwrap();
            assert_eq!(again, text);
            let mut other = Vec::new();
            let reseeded = StreamPlan { seed: 4, ..plan };
            write_stream(&schema, &reseeded, format, &mut other, || true).unwrap();
            assert_ne!(other, text);
        }
        // The stamp is the schedule: batch k of a producer at k × 64 rows ÷ 5000 rows/s.
        let mut text = Vec::new();
        write_stream(&schema, &plan, OutputFormat::JsonLines, &mut text, || true).unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&text).unwrap().lines().collect();
        assert_eq!(crate::stamp_of(lines[0], "sent_at"), Ok(0));
        assert_eq!(crate::stamp_of(lines[128], "sent_at"), Ok(12_800_000));
        let csv = {
            let mut t = Vec::new();
            write_stream(&schema, &plan, OutputFormat::Csv, &mut t, || true).unwrap();
            t
        };
        assert!(csv.starts_with(b"sensor,value,at,sent_at\n"));
    }

    #[test]
    fn nexmark_rows_and_a_time_bound() {
        let plan = StreamPlan {
            seed: 1,
            producers: 1,
            rows: Some(300),
            batch_rows: 100,
            rate: 0,
            stamp: None,
            random: crate::RandomOptions::default(),
            clock_start_ms: 0,
        };
        let mut text = Vec::new();
        write_stream(
            &bid_schema(),
            &plan,
            OutputFormat::JsonLines,
            &mut text,
            || true,
        )
        .unwrap();
        let back = read_back(&bid_schema(), FileFormat::JsonLines, &text);
        assert_eq!(back.len(), 300);
        // Unbounded rows stop when told: two rounds of one batch each.
        let mut rounds = 0;
        let unbounded = StreamPlan { rows: None, ..plan };
        let (rows, _) = write_stream(
            &bid_schema(),
            &unbounded,
            OutputFormat::Csv,
            &mut Vec::new(),
            || {
                rounds += 1;
                rounds <= 2
            },
        )
        .unwrap();
        assert_eq!(rows, 200);
    }
}
