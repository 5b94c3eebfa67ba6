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
pub use plan::{events_for, parse_duration, random_options, stamp_field, OutputFormat, ShapeArgs};

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
    /// Random values of each field's type, shaped by [`RandomOptions`].
    Random(RandomRows),
}

/// How random rows are drawn beyond each field's type (`--keys`, `--event-time now`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RandomOptions {
    /// Key fields, bit `i` for field `i` (string, bytes or i64): with `keys`, each takes one
    /// of `keys` distinct values (`key0`, `key1`, … or 0, 1, …).
    pub key_fields: u64,
    /// Distinct values of every key field; random strings and numbers when `None`.
    pub keys: Option<u64>,
    /// Event-time fields, bit `i` for field `i` (timestamp, or i64 milliseconds): they follow
    /// the clock set with [`RowMaker::set_clock_ms`] instead of spreading over a day.
    pub time_fields: u64,
    /// Each row's event time is the clock minus a uniform draw from `0..=disorder_ms`, so a
    /// watermark that allows `disorder_ms` of out-of-orderness sees no late rows.
    pub disorder_ms: u64,
}

/// The state of a maker of random rows.
#[derive(Debug)]
pub struct RandomRows {
    /// The row schema.
    schema: Schema,
    /// xorshift64* state.
    state: u64,
    /// Reused text buffer.
    text: String,
    options: RandomOptions,
    /// The time event-time fields follow, in unix milliseconds.
    clock_ms: i64,
}

/// The fixed base of timestamps when event time does not follow a clock (2023-11-14).
const SPREAD_BASE_MS: i64 = 1_700_000_000_000;

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
            None => RowMaker::Random(RandomRows {
                schema: schema.clone(),
                state: (seed ^ 0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(producer.wrapping_mul(0x2545_f491))
                    | 1,
                text: String::new(),
                options: RandomOptions::default(),
                clock_ms: SPREAD_BASE_MS,
            }),
        }
    }

    /// The same maker with `options` for its random rows (Nexmark makers ignore them).
    pub fn with_options(mut self, options: RandomOptions) -> RowMaker {
        if let RowMaker::Random(rows) = &mut self {
            rows.options = options;
        }
        self
    }

    /// Sets the time that event-time fields follow (unix milliseconds), e.g. the scheduled
    /// send time of the next batch.
    pub fn set_clock_ms(&mut self, now_ms: i64) {
        if let RowMaker::Random(rows) = self {
            rows.clock_ms = now_ms;
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
            RowMaker::Random(random) => {
                for _ in 0..rows {
                    random.row(stamp, builder)?;
                }
                Ok(())
            }
        }
    }
}

impl RandomRows {
    fn row(
        &mut self,
        stamp: Option<(usize, i64)>,
        builder: &mut BatchBuilder,
    ) -> wire_core::Result<()> {
        let spans = self.texts();
        let state = &mut self.state;
        let options = &self.options;
        let mut values: Vec<ValueRef<'_>> = Vec::with_capacity(self.schema.len());
        for (index, field) in self.schema.fields().iter().enumerate() {
            let roll = next(state);
            let bit = 1u64.checked_shl(index as u32).unwrap_or(0);
            let key = options.keys.filter(|_| options.key_fields & bit != 0);
            let on_clock = options.time_fields & bit != 0;
            let event_ms = self.clock_ms - (roll % (options.disorder_ms + 1)) as i64;
            let value = match field.data_type {
                _ if field.nullable && key.is_none() && !on_clock && roll.is_multiple_of(16) => {
                    ValueRef::Null
                }
                DataType::I64 if on_clock => ValueRef::I64(event_ms),
                DataType::I64 => {
                    ValueRef::I64(key.map_or(roll % 1_000_000, |n| roll % n.max(1)) as i64)
                }
                DataType::F64 => ValueRef::F64((roll % 10_000) as f64 / 100.0),
                DataType::Bool => ValueRef::Bool(roll.is_multiple_of(2)),
                DataType::Timestamp if on_clock => ValueRef::Timestamp(event_ms),
                DataType::Timestamp => {
                    ValueRef::Timestamp(SPREAD_BASE_MS + (roll % 86_400_000) as i64)
                }
                DataType::String => {
                    let (start, end) = spans.get(index).copied().unwrap_or((0, 0));
                    ValueRef::Str(&self.text[start..end])
                }
                DataType::Bytes => {
                    let (start, end) = spans.get(index).copied().unwrap_or((0, 0));
                    ValueRef::Bytes(&self.text.as_bytes()[start..end])
                }
                _ => ValueRef::Null,
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

    /// Writes the row's strings into one buffer first (the values borrow them): a key field
    /// gets `key<k>` with `k` below `keys`, any other string 4 to 15 random letters.
    fn texts(&mut self) -> [(usize, usize); 64] {
        self.text.clear();
        let mut spans = [(0usize, 0usize); 64];
        for (index, field) in self.schema.fields().iter().enumerate().take(spans.len()) {
            if !matches!(field.data_type, DataType::String | DataType::Bytes) {
                continue;
            }
            let start = self.text.len();
            let is_key = self.options.key_fields & (1 << index) != 0;
            match self.options.keys.filter(|_| is_key) {
                Some(keys) => {
                    let k = next(&mut self.state) % keys.max(1);
                    self.text.push_str("key");
                    self.text.push_str(&k.to_string());
                }
                None => {
                    let len = 4 + next(&mut self.state) % 12;
                    for _ in 0..len {
                        let letter = b'a' + (next(&mut self.state) % 26) as u8;
                        self.text.push(char::from(letter));
                    }
                }
            }
            spans[index] = (start, self.text.len());
        }
        spans
    }
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

    fn sensor_schema() -> Schema {
        Schema::new(vec![
            Field::new("sensor", DataType::String),
            Field::new("site", DataType::I64),
            Field::new("note", DataType::String),
            Field::nullable("at", DataType::Timestamp),
            Field::new("seen_ms", DataType::I64),
        ])
    }

    fn rows_of(maker: &mut RowMaker, rows: usize) -> Vec<Vec<wire_core::Value>> {
        let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
        maker.fill(&mut builder, rows).unwrap();
        let batch = builder.finish();
        let view = batch.view();
        view.rows().map(|row| row.to_values()).collect()
    }

    fn distinct(rows: &[Vec<wire_core::Value>], field: usize) -> usize {
        let mut seen: Vec<String> = rows.iter().map(|r| format!("{:?}", r[field])).collect();
        seen.sort();
        seen.dedup();
        seen.len()
    }

    #[test]
    fn key_fields_take_exactly_the_asked_number_of_values() {
        let options = RandomOptions {
            key_fields: 0b011,
            keys: Some(7),
            ..RandomOptions::default()
        };
        let mut maker = RowMaker::for_schema(&sensor_schema(), 3, 0, 1).with_options(options);
        let rows = rows_of(&mut maker, 2000);
        assert_eq!(distinct(&rows, 0), 7, "string key");
        assert_eq!(distinct(&rows, 1), 7, "i64 key");
        assert!(
            distinct(&rows, 2) > 1000,
            "a string that is not a key stays random"
        );
        for row in &rows {
            let wire_core::Value::Str(sensor) = &row[0] else {
                panic!("{row:?}")
            };
            let k: u64 = sensor.strip_prefix("key").unwrap().parse().unwrap();
            assert!(k < 7);
            assert!(matches!(row[1], wire_core::Value::I64(0..=6)));
        }
    }

    #[test]
    fn event_time_follows_the_clock_within_the_disorder() {
        let options = RandomOptions {
            time_fields: 0b11000,
            disorder_ms: 2000,
            ..RandomOptions::default()
        };
        let mut maker = RowMaker::for_schema(&sensor_schema(), 5, 0, 1).with_options(options);
        let now = 1_800_000_000_000i64;
        maker.set_clock_ms(now);
        let rows = rows_of(&mut maker, 5000);
        let (mut lowest, mut highest) = (i64::MAX, i64::MIN);
        for row in &rows {
            // An event-time field is never NULL, even when nullable.
            let wire_core::Value::Timestamp(at) = row[3] else {
                panic!("{row:?}")
            };
            let wire_core::Value::I64(seen) = row[4] else {
                panic!("{row:?}")
            };
            for t in [at, seen] {
                assert!((now - 2000..=now).contains(&t), "{t} outside the disorder");
                lowest = lowest.min(t);
                highest = highest.max(t);
            }
        }
        assert!(
            highest - lowest > 1500,
            "disorder is used: {lowest}..{highest}"
        );
        maker.set_clock_ms(now + 60_000);
        let later = rows_of(&mut maker, 10);
        assert!(later
            .iter()
            .all(|row| matches!(row[3], wire_core::Value::Timestamp(t) if t > now + 57_000)));
        // Without options the rows are what they always were (other engines replay them).
        let mut plain = RowMaker::for_schema(&sensor_schema(), 5, 0, 1);
        let mut defaulted =
            RowMaker::for_schema(&sensor_schema(), 5, 0, 1).with_options(RandomOptions::default());
        assert_eq!(rows_of(&mut plain, 100), rows_of(&mut defaulted, 100));
    }
}
