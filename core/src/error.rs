//! The error type shared by the record format and everything built on it.

/// Errors raised by `wire-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch's bytes failed validation. `position` is the byte offset inside the batch.
    #[error("corrupt batch at byte {position}: {reason}")]
    CorruptBatch {
        /// Byte offset inside the batch where the problem was found.
        position: usize,
        /// What was wrong.
        reason: String,
    },
    /// A batch's checksum does not match its bytes.
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// CRC32C stored in the header.
        stored: u32,
        /// CRC32C computed over the bytes.
        computed: u32,
    },
    /// A row does not match the schema it is checked against.
    #[error("row {row}, field {field} (`{name}`): expected {expected}, found {found}")]
    SchemaMismatch {
        /// Row index inside the batch.
        row: usize,
        /// Field position inside the row.
        field: usize,
        /// Field name from the schema.
        name: String,
        /// Type the schema asks for.
        expected: String,
        /// What the row holds.
        found: String,
    },
    /// A row has a different number of fields than the schema.
    #[error("row {row} has {found} fields, schema has {expected}")]
    ArityMismatch {
        /// Row index inside the batch.
        row: usize,
        /// Field count of the schema.
        expected: usize,
        /// Field count of the row.
        found: usize,
    },
    /// A batch would exceed the format's size limit.
    #[error("batch too large: {bytes} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge {
        /// Size the batch would have.
        bytes: usize,
        /// Largest size the format allows.
        limit: usize,
    },
    /// A user-written operator (`process`) failed.
    #[error("process `{function}`: {message}")]
    Process {
        /// The registered function name.
        function: String,
        /// What it reported.
        message: String,
    },
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
