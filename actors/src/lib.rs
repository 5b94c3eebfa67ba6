//! Wire's data plane: one pinned glommio executor per data core, every task of the pipeline
//! instantiated on every core, bounded queues between them, and counters the caller reads.
//!
//! [`start`] turns a type-checked [`wire_core::plan::Plan`] into running cores:
//!
//! - the plan is cut into tasks ([`graph::PhysicalGraph`]): a source or an operator with a
//!   mailbox, plus the stateless operators fused after it ([`chain::Chain`]);
//! - every task runs on every core; sources own partitions `p` with `p % cores == core`;
//! - a task's output goes to the next task on the same core, or — after a `key_by` — to the
//!   core owning each row's key group, over single-producer single-consumer channels;
//! - every queue is bounded, so a slow sink suspends its producers all the way back to the
//!   sources (backpressure), and the time spent suspended is counted ([`probe`]).
//!
//! The run ends when every source is exhausted (or [`RunOptions::stop`] is set) and every
//! queue has drained and every sink has flushed.
#![forbid(unsafe_code)]

pub mod chain;
pub mod checkpoint;
mod error;
pub mod graph;
mod lookup;
pub mod message;
mod operator;
mod optimize;
pub mod outlet;
pub mod probe;
mod runtime;
mod sink;
mod source;
mod task;

pub use checkpoint::{Ack, AckContent, Checkpointing};
pub use error::Error;
pub use probe::{Counters, NodeProbe, Role, RunProbe};
pub use runtime::{start, Failure, Notice, RunOptions, RunReport, Running};
pub use runtime::{EXCHANGE_BATCHES, MAILBOX_BATCHES};
pub use sink::{
    discard_file_sink_parts, lock_file_sinks, published_file_sink_parts, recover_file_sinks,
    PublishedParts, SinkLocks, SINK_LOCK_FILE,
};
