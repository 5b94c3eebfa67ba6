//! Micro-benchmarks of the Nexmark generator alone: events generated and pushed as rows into a
//! batch builder, as the `nexmark` source does (batches of 1024 rows, finished and dropped).
//! Times are the thread's CPU time, not wall time, so throughputs are events per CPU-second
//! and hold up on a machine shared with other work.
//! Run: `cargo bench -p wire-bench --bench micro_nexmark`.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_main, Criterion, Throughput};
use mimalloc::MiMalloc;
use wire_core::nexmark::{EventKind, EventScratch, Generator, GeneratorConfig};
use wire_core::{BatchBuilder, PartitionId, StreamId};

// The same allocator as Wire's binaries, so allocation costs match production.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Event numbers per iteration: 200 reference epochs of 50 events.
const EVENTS: u64 = 10_000;
/// Rows per batch, as the source's default `batch_rows`.
const BATCH_ROWS: usize = 1024;

/// Pushes events `start..start + EVENTS` (only `kind`'s, or all when `None`) into `builder`,
/// finishing a batch every [`BATCH_ROWS`] rows (without its checksum, as the source does, or
/// `sealed` with it, as before batches that stay in the process went unsealed); returns the
/// rows pushed.
fn generate(
    generator: &Generator,
    (kind, sealed): (Option<EventKind>, bool),
    start: u64,
    scratch: &mut EventScratch,
    builder: &mut BatchBuilder,
) -> usize {
    let finish = |builder: &mut BatchBuilder| {
        if sealed {
            builder.finish()
        } else {
            builder.finish_local()
        }
    };
    let mut rows = 0;
    for n in start..start + EVENTS {
        match kind {
            Some(kind) => {
                generator
                    .push_event_of(kind, n, scratch, builder)
                    .expect("rows fit");
            }
            None => {
                generator.push_event(n, scratch, builder).expect("rows fit");
            }
        }
        if builder.row_count() >= BATCH_ROWS {
            rows += finish(builder).row_count();
        }
    }
    rows + finish(builder).row_count()
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), as a criterion measurement.
struct ThreadCpuTime;

impl ThreadCpuTime {
    fn now() -> Duration {
        Duration::from_secs_f64(wire_bench::thread_cpu_s())
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        ThreadCpuTime::now()
    }
    fn end(&self, started: Duration) -> Duration {
        ThreadCpuTime::now().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, formatted as wall time is.
        WallTime.formatter()
    }
}

fn generator_benches(c: &mut Criterion<ThreadCpuTime>) {
    let generator = Generator::new(GeneratorConfig {
        seed: 1,
        ..GeneratorConfig::default()
    })
    .expect("the default config is valid");
    let mut group = c.benchmark_group("nexmark");
    // Throughput counts event numbers walked, as the source's events/s does.
    group.throughput(Throughput::Elements(EVENTS));
    for (name, kind) in [
        ("all_events", (None, false)),
        ("bids_only", (Some(EventKind::Bid), false)),
        ("bids_only_sealed", (Some(EventKind::Bid), true)),
        ("auctions_only", (Some(EventKind::Auction), false)),
        ("persons_only", (Some(EventKind::Person), false)),
    ] {
        let mut scratch = EventScratch::default();
        let mut builder = BatchBuilder::with_capacity(StreamId(0), PartitionId(0), 256 << 10);
        let mut start = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let rows = generate(&generator, kind, start, &mut scratch, &mut builder);
                start += EVENTS;
                rows
            })
        });
    }
    group.finish();
}

mod group {
    #![allow(missing_docs)]
    criterion::criterion_group! {
        name = benches;
        config = criterion::Criterion::default().with_measurement(super::ThreadCpuTime);
        targets = super::generator_benches
    }
}

criterion_main!(group::benches);
