//! Errors of the data plane.

use std::path::PathBuf;

/// Why a pipeline run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An executor could not start (locked memory, io_uring, thread spawn).
    #[error("cannot start a data core: {0}")]
    Executor(#[source] std::io::Error),
    /// A batch could not be built (a row or batch over the size limit).
    #[error(transparent)]
    Batch(#[from] wire_core::Error),
    /// A Nexmark source's generator settings are invalid.
    #[error(transparent)]
    Nexmark(#[from] wire_core::nexmark::ConfigError),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of an input file does not decode.
    #[error("{path}: {detail}")]
    Decode {
        /// The input file.
        path: PathBuf,
        /// Line, column, field and reason.
        detail: String,
    },
    /// A WAL operation failed.
    #[error("source `{source_name}`: {error}")]
    Wal {
        /// The ingest source.
        source_name: String,
        /// The cause.
        #[source]
        error: wire_storage::Error,
    },
    /// An ingest source could not listen.
    #[error("source `{source_name}`: cannot listen on {addr}: {error}")]
    Listen {
        /// The ingest source.
        source_name: String,
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        error: std::io::Error,
    },
    /// A checkpoint cannot be restored into this pipeline.
    #[error("cannot restore checkpoint {checkpoint}: {reason}")]
    Restore {
        /// The checkpoint's id.
        checkpoint: u64,
        /// What does not fit.
        reason: String,
    },
    /// Another process holds the lock of a file sink's directory.
    #[error("file sink directory {path} is locked by another wire run{}: two runs must not write one directory; stop the other run or give this sink another path", holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    SinkLocked {
        /// The sink's directory.
        path: PathBuf,
        /// What the lock file says about its holder, if readable.
        holder: Option<String>,
    },
    /// The core pool cannot take the command (too few cores, or shut down).
    #[error("core pool: {0}")]
    Pool(String),
    /// A connector to an external system (Kafka) failed; the text names the connector, the
    /// address and the cause.
    #[error("{0}")]
    Connector(String),
    /// The exchange between nodes failed: the text names the stream and the cause.
    #[error("exchange: {0}")]
    Exchange(String),
    /// A data core panicked (a bug); its message went to stderr.
    #[error("a data core panicked")]
    Panicked,
    /// The run was ended without draining (its version was superseded, or its part failed
    /// on another node); the text says why.
    #[error("aborted: {0}")]
    Aborted(String),
}

impl Error {
    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
