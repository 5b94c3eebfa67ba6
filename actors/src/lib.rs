//! Wire's data plane: a pool of pinned glommio executors, one per data core, that live as
//! long as the process ([`CorePool`]); every task of a deployed pipeline instantiated on every
//! core it runs on, bounded queues between them, and counters the caller reads.
//!
//! [`PoolHandle::deploy`] turns a type-checked [`wire_core::frontend::plan::Plan`] into running
//! instances on the pool's cores, beside other pipelines:
//!
//! - the plan is cut into tasks ([`graph::PhysicalGraph`]): a source or an operator with a
//!   mailbox, plus the stateless operators fused after it ([`chain::Chain`]);
//! - every task runs on every core; sources own partitions `p` with `p % cores == core`;
//! - a task's output goes to the next task on the same core, or — after a `key_by` — to the
//!   core owning each row's key group, over single-producer single-consumer channels;
//! - every queue is bounded, so a slow sink suspends its producers all the way back to the
//!   sources (backpressure), and the time spent suspended is counted ([`probe`]).
//!
//! A pipeline ends when every source is exhausted (or it is cancelled) and every queue has
//! drained and every sink has flushed; the pool's cores go on.
#![forbid(unsafe_code)]

pub mod chain;
pub mod checkpoint;
mod dead_letter;
mod error;
pub mod exchange;
pub mod graph;
pub mod ingest_stats;
mod kafka;
mod lookup;
mod maybe_tls;
pub mod message;
mod mongo;
mod operator;
mod optimize;
pub mod outlet;
mod pipeline;
pub mod pool;
pub mod probe;
mod retry;
mod sink;
mod source;
mod task;

pub use checkpoint::{Ack, AckContent, Checkpointing};
pub use error::Error;
pub use pipeline::{io_memory_for, Deploy, Failure, Notice, WAL_IO_MEMORY_BYTES};
pub use pipeline::{CORE_QUEUE_BATCHES, EXCHANGE_BATCHES, MAILBOX_BATCHES};
pub use pool::{
    core_executor, CorePool, Deployment, Event, EventKind, PipelineId, PoolHandle, PoolOptions,
    RunReport,
};
pub use probe::{Counters, NodeProbe, Role, RunProbe, NO_WATERMARK};
pub use sink::{
    discard_file_sink_parts, lock_file_sinks, published_file_sink_parts, recover_file_sink_slots,
    recover_file_sinks, recover_kafka_sinks, recover_postgres_sinks, PublishedParts, SinkLocks,
    SINK_LOCK_FILE,
};
pub use source::ingest::{
    AuthFuture, IngestAuth, IngestAuthRequest, IngestRefusal, IngestTls, AUTH_WAIT, TOKEN_RECHECK,
};
/// How idempotent producers' 48-bit ids split into the issuing node and its counter.
pub use source::ingest::{ID_COUNTER_BITS, NODE_ID_BITS, NODE_ID_MAX};
