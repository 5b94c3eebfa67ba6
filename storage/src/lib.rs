//! Wire's durable storage: the segment-log write-ahead log (and, later, state and checkpoint
//! files and the raft log).
//!
//! Everything here runs on a glommio executor: a [`wal::SegmentLog`] belongs to the core that
//! opened it and is not `Send`. The crate owns disk layout, durability and recovery; it refuses
//! consensus decisions and networking. glommio imports stay inside this crate's IO paths
//! ([`io`], [`wal`]) so that a move to another io_uring runtime stays local.
//!
//! ```no_run
//! use wire_storage::wal::{Durability, LogConfig, SegmentLog};
//!
//! let executor = wire_storage::io::local_executor().unwrap();
//! executor.run(async {
//!     let config = LogConfig { durability: Durability::Always, ..LogConfig::default() };
//!     let (log, report) = SegmentLog::open("wire-data/p0", config).await.unwrap();
//!     println!("recovered up to offset {}", report.next_offset);
//!     log.close().await.unwrap();
//! });
//! ```

pub mod checkpoint;
pub mod disk;
pub mod error;
pub mod io;
pub mod lock;
mod signal;
pub mod wal;

pub use error::{Error, Result};
