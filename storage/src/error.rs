//! The storage error type.

use std::io;
use std::path::PathBuf;

/// Errors raised by the segment log and the other stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device holding `path` is full. Nothing past the last acknowledged append was lost.
    #[error("disk full writing {path}")]
    DiskFull {
        /// File or directory being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The process may not read or write `path`.
    #[error("permission denied on {path}")]
    PermissionDenied {
        /// File or directory refused.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {path} is locked by another process{}", holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// What the lock file says about its holder, if readable.
        holder: Option<String>,
    },
    /// The filesystem refuses O_DIRECT (tmpfs, some FUSE and network filesystems).
    #[error(
        "{path}: the filesystem does not support O_DIRECT; put the data directory on ext4 or xfs"
    )]
    DirectIoUnsupported {
        /// The file that could not be opened.
        path: PathBuf,
    },
    /// Bytes on disk are damaged somewhere other than the log's tail.
    #[error("corrupt segment {path} at byte {position}: {reason}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte position inside the file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A write or sync of the log failed (`EIO`, a short write): the log refuses all further
    /// work, and nothing after its last successful sync is acknowledged, until it is reopened.
    /// The sync is never retried: after a failed `fdatasync` Linux may have dropped the data
    /// while a second `fdatasync` reports success (fsyncgate).
    #[error(
        "log poisoned: {op} {path} failed: {cause}; nothing after the last successful sync is \
         acknowledged; restart to recover from the log"
    )]
    Poisoned {
        /// What was being done.
        op: &'static str,
        /// The segment file or directory.
        path: PathBuf,
        /// The error the device reported (in the message, so that it reaches producers).
        cause: io::Error,
    },
    /// The requested offset was removed by retention.
    #[error("offset {offset} is below the log start {log_start}")]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: u64,
        /// First offset still in the log.
        log_start: u64,
    },
    /// The log was closed.
    #[error("log closed")]
    Closed,
    /// A configuration value is out of range.
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// A batch handed to the log is malformed.
    #[error(transparent)]
    Batch(#[from] wire_core::Error),
    /// Any other IO failure, with what was being done and to which path.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies an IO error on `path`, so full disks and permissions read clearly.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Error {
        let path = path.into();
        let source = source.into();
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                Error::DiskFull { path, source }
            }
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { path, source },
            _ => Error::Io { op, path, source },
        }
    }
}
