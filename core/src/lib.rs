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

pub mod agg;
pub mod batch;
pub mod error;
pub mod expr;
pub mod format;
pub mod key;
pub mod nexmark;
pub mod plan;
pub mod process;
pub mod row;
pub mod schema;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod time;
pub mod watermark;
pub mod window;

pub use batch::{Batch, BatchBuilder, BatchHeader, BatchView, OwnedRow, PartitionId, StreamId};
pub use error::{Error, Result};
pub use format::{FormatError, RowReader, RowWriter};
pub use row::{ArchivedRow, ArchivedValue, AsValueRef, RowRef, Value, ValueRef};
pub use schema::{DataType, Field, Schema};
