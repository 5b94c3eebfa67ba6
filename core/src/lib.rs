//! Wire's shared foundation: the record format, schemas and the errors every crate uses.
//!
//! `wire-core` is pure: no runtime, no IO, no clocks. It owns the one record format used
//! everywhere — a [`Batch`] is a contiguous buffer of rkyv-archived rows behind a 64-byte header
//! — which the WAL appends, cores exchange and operators read in place.
//!
//! ```
//! use wire_core::{BatchBuilder, PartitionId, StreamId, ValueRef};
//!
//! let mut builder = BatchBuilder::new(StreamId(0), PartitionId(3));
//! builder.push_with_time(&[ValueRef::I64(1), ValueRef::Str("bid")], 1_000).unwrap();
//! builder.push_with_time(&[ValueRef::I64(2), ValueRef::Null], 900).unwrap();
//! let batch = builder.finish();
//! assert_eq!(batch.header().min_event_time, 900);
//! let view = batch.view();
//! let ids: Vec<i64> = view.rows().filter_map(|row| row.get(0)?.as_i64()).collect();
//! assert_eq!(ids, [1, 2]);
//! ```
//!
//! The modules are its parts:
//! - [`record`]: the record format (batches, rows, schemas, keys, JSON lines and CSV);
//! - [`time`]: calendar arithmetic, watermarks and windows;
//! - [`frontend`]: pipeline specs, expressions and plans;
//! - [`operator`]: the pure logic of operators (aggregates, user-written keyed processes);
//! - [`state`]: keyed state and the byte encoding of its snapshots;
//! - [`nexmark`]: the Nexmark generator;
//! - [`error`]: the errors every crate shares.

pub mod error;
pub mod frontend;
pub mod nexmark;
pub mod operator;
pub mod record;
pub mod state;
pub mod time;

pub use error::{Error, Result};
pub use record::batch::{
    Batch, BatchBuilder, BatchHeader, BatchView, OwnedRow, PartitionId, StreamId,
};
pub use record::format::{FormatError, RowReader, RowWriter};
pub use record::row::{ArchivedRow, ArchivedValue, AsValueRef, RowRef, Value, ValueRef};
pub use record::schema::{DataType, Field, Schema};
pub use record::store::RowStore;
