//! The record format used everywhere: batches of rows, schemas, keys, and JSON lines and CSV.

pub mod avro;
pub mod batch;
pub mod format;
pub mod key;
pub mod row;
pub mod schema;
pub mod store;
