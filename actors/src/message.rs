//! What flows between operator actors.

use wire_core::Batch;

/// One mailbox item. Each upstream instance sends any number of batches, then one `End`.
#[derive(Debug)]
pub enum Message {
    /// Rows, moved (never copied) from sender to receiver.
    Batch(Batch),
    /// The sender has no more rows; a task finishes after an `End` from every sender.
    End,
}
