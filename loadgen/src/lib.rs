//! `wire-loadgen`'s row makers: Nexmark events from the same generator as the `nexmark` source,
//! or random rows of any schema, written straight into batches.
//!
//! The binary (`src/main.rs`) drives a node's ingest port with them; this library is pure and
//! deterministic per seed, so another engine can be fed the identical stream.
#![forbid(unsafe_code)]

pub mod e2e;
pub mod output;
pub mod plan;

pub use e2e::{stamp_of, E2eRecorder, LineError};
pub use output::{write_stream, StreamPlan};
pub use plan::{events_for, parse_duration, stamp_field, OutputFormat};

use wire_core::nexmark::{
    auction_schema, bid_schema, person_schema, EventKind, EventScratch, Generator, GeneratorConfig,
};
use wire_core::{BatchBuilder, DataType, Schema, ValueRef};

/// Makes rows for one producer: its share of a stream, in order.
#[derive(Debug)]
pub enum RowMaker {
    /// Nexmark events of one kind; producer `p` of `P` takes event numbers `p, p + P, …`.
    Nexmark {
        /// The generator.
        generator: Box<Generator>,
        /// The kind the target source expects.
        kind: EventKind,
        /// Reused string buffers.
        scratch: EventScratch,
        /// The next event number to try.
        next: u64,
        /// Distance between this producer's event numbers.
        step: u64,
    },
    /// Random values of each field's type.
    Random {
        /// The row schema.
        schema: Schema,
        /// xorshift64* state.
        state: u64,
        /// Reused text buffer.
        text: String,
    },
}

impl RowMaker {
    /// A maker for `schema`: Nexmark when the schema is one of Nexmark's, random otherwise.
    pub fn for_schema(schema: &Schema, seed: u64, producer: u64, producers: u64) -> RowMaker {
        let kind = [
            (EventKind::Bid, bid_schema()),
            (EventKind::Auction, auction_schema()),
            (EventKind::Person, person_schema()),
        ]
        .into_iter()
        .find(|(_, nexmark)| nexmark == schema)
        .map(|(kind, _)| kind);
        match kind {
            Some(kind) => {
                let config = GeneratorConfig {
                    seed,
                    ..GeneratorConfig::default()
                };
                RowMaker::Nexmark {
                    generator: Box::new(
                        Generator::new(config).expect("the default generator config is valid"),
                    ),
                    kind,
                    scratch: EventScratch::default(),
                    next: producer,
                    step: producers.max(1),
                }
            }
            None => RowMaker::Random {
                schema: schema.clone(),
                state: (seed ^ 0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(producer.wrapping_mul(0x2545_f491))
                    | 1,
                text: String::new(),
            },
        }
    }

    /// Appends `rows` rows to `builder`.
    pub fn fill(&mut self, builder: &mut BatchBuilder, rows: usize) -> wire_core::Result<()> {
        self.fill_stamped(builder, rows, None)
    }

    /// Whether the rows are Nexmark events (whose schema has no field to spare for a stamp).
    pub fn is_nexmark(&self) -> bool {
        matches!(self, RowMaker::Nexmark { .. })
    }

    /// Appends `rows` rows to `builder`; with `stamp = Some((field, value))`, field `field`
    /// (an `i64` field, see [`stamp_field`]) of every row holds `value` instead of a random one.
    /// Nexmark makers ignore `stamp`: their schemas have no field to spare.
    pub fn fill_stamped(
        &mut self,
        builder: &mut BatchBuilder,
        rows: usize,
        stamp: Option<(usize, i64)>,
    ) -> wire_core::Result<()> {
        match self {
            RowMaker::Nexmark {
                generator,
                kind,
                scratch,
                next,
                step,
            } => {
                let mut pushed = 0;
                while pushed < rows {
                    if generator.push_event_of(*kind, *next, scratch, builder)? {
                        pushed += 1;
                    }
                    *next += *step;
                }
                Ok(())
            }
            RowMaker::Random {
                schema,
                state,
                text,
            } => {
                for _ in 0..rows {
                    random_row(schema, state, text, stamp, builder)?;
                }
                Ok(())
            }
        }
    }
}

fn random_row(
    schema: &Schema,
    state: &mut u64,
    text: &mut String,
    stamp: Option<(usize, i64)>,
    builder: &mut BatchBuilder,
) -> wire_core::Result<()> {
    // Strings of a row are written into one buffer first, then borrowed by the values.
    text.clear();
    let mut spans = [(0usize, 0usize); 64];
    for (index, field) in schema.fields().iter().enumerate().take(spans.len()) {
        if matches!(field.data_type, DataType::String | DataType::Bytes) {
            let start = text.len();
            let len = 4 + next(state) % 12;
            for _ in 0..len {
                text.push(char::from(b'a' + (next(state) % 26) as u8));
            }
            spans[index] = (start, text.len());
        }
    }
    let mut values: Vec<ValueRef<'_>> = Vec::with_capacity(schema.len());
    let now_ms = 1_700_000_000_000i64;
    for (index, field) in schema.fields().iter().enumerate() {
        let roll = next(state);
        let value = if field.nullable && roll.is_multiple_of(16) {
            ValueRef::Null
        } else {
            match field.data_type {
                DataType::I64 => ValueRef::I64((roll % 1_000_000) as i64),
                DataType::F64 => ValueRef::F64((roll % 10_000) as f64 / 100.0),
                DataType::Bool => ValueRef::Bool(roll.is_multiple_of(2)),
                DataType::Timestamp => ValueRef::Timestamp(now_ms + (roll % 86_400_000) as i64),
                DataType::String => {
                    let (start, end) = spans.get(index).copied().unwrap_or((0, 0));
                    ValueRef::Str(&text[start..end])
                }
                DataType::Bytes => {
                    let (start, end) = spans.get(index).copied().unwrap_or((0, 0));
                    ValueRef::Bytes(&text.as_bytes()[start..end])
                }
                _ => ValueRef::Null,
            }
        };
        values.push(value);
    }
    if let Some((field, value)) = stamp {
        if let Some(slot) = values.get_mut(field) {
            *slot = ValueRef::I64(value);
        }
    }
    builder.push(&values)?;
    Ok(())
}

/// xorshift64*.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_core::{Field, PartitionId, StreamId};

    #[test]
    fn nexmark_schemas_get_the_generator_and_others_random_rows() {
        let mut bids = RowMaker::for_schema(&bid_schema(), 1, 0, 1);
        assert!(matches!(
            bids,
            RowMaker::Nexmark {
                kind: EventKind::Bid,
                ..
            }
        ));
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        bids.fill(&mut builder, 100).unwrap();
        let batch = builder.finish();
        assert_eq!(batch.row_count(), 100);
        batch.view().check_schema(&bid_schema()).unwrap();

        let schema = Schema::new(vec![
            Field::new("sensor", DataType::String),
            Field::nullable("value", DataType::F64),
            Field::new("at", DataType::Timestamp),
            Field::new("ok", DataType::Bool),
            Field::nullable("raw", DataType::Bytes),
        ]);
        let mut random = RowMaker::for_schema(&schema, 7, 0, 1);
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        random.fill(&mut builder, 500).unwrap();
        let batch = builder.finish();
        assert_eq!(batch.row_count(), 500);
        batch.view().check_schema(&schema).unwrap();
        // Deterministic per seed.
        let mut again = RowMaker::for_schema(&schema, 7, 0, 1);
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        again.fill(&mut builder, 500).unwrap();
        assert_eq!(builder.finish().as_bytes(), batch.as_bytes());
    }
}
