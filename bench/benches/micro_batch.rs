//! Micro-benchmarks of the record format: building batches, verifying outside bytes and
//! reading rows in place. Run: `cargo bench -p wire-bench --bench micro_batch`.

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use mimalloc::MiMalloc;
use wire_core::record::row::{check_archived_row, rkyv_accepts_row};
use wire_core::{BatchBuilder, BatchView, PartitionId, StreamId, ValueRef};

// The same allocator as Wire's binaries, so allocation costs match production.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ROWS: usize = 1000;

fn push_rows(builder: &mut BatchBuilder) {
    for i in 0..ROWS as i64 {
        let row = [
            ValueRef::I64(1000 + i % 977),
            ValueRef::I64(2000 + i % 313),
            ValueRef::I64(100 + i * 7 % 10_000),
            ValueRef::Str("google"),
            ValueRef::Str("https://www.nexmark.com/bid/item.htm?query=1&channel_id=8291"),
            ValueRef::Timestamp(1_700_000_000_000 + i),
            ValueRef::Str(""),
        ];
        builder
            .push_with_time(&row, 1_700_000_000_000 + i)
            .expect("batch fits");
    }
}

fn batch_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(ROWS as u64));
    let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
    group.bench_function("build_1000_bid_rows", |b| {
        b.iter(|| {
            push_rows(&mut builder);
            builder.finish()
        })
    });
    push_rows(&mut builder);
    let batch = builder.finish();
    group.bench_function("verify_1000_bid_rows", |b| {
        b.iter_batched(
            || batch.as_bytes(),
            |bytes| BatchView::verify(bytes).map(|v| v.row_count()),
            BatchSize::SmallInput,
        )
    });
    // The baseline the row check replaced: rkyv's own validator on every row (no checksum).
    let view = batch.view();
    group.bench_function("rkyv_validate_1000_bid_rows", |b| {
        b.iter(|| {
            (0..view.row_count())
                .filter(|&row| rkyv_accepts_row(view.row_bytes(row)))
                .count()
        })
    });
    group.bench_function("check_1000_bid_rows", |b| {
        b.iter(|| {
            (0..view.row_count())
                .filter(|&row| check_archived_row(view.row_bytes(row)).is_ok())
                .count()
        })
    });
    group.bench_function("read_price_in_place_1000_rows", |b| {
        b.iter(|| {
            batch
                .view()
                .rows()
                .filter_map(|row| row.get(2)?.as_i64())
                .sum::<i64>()
        })
    });
    group.finish();
}

mod group {
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::batch_benches);
}

criterion_main!(group::benches);
