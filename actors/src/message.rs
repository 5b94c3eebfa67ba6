//! What flows between operator actors: batches, and in the same queues — so their order with
//! respect to rows is kept without further synchronisation — watermarks, checkpoint barriers
//! and ends.

use wire_core::time::watermark::SenderId;
use wire_core::Batch;

/// One mailbox item. Each upstream instance sends any number of batches and watermarks, then
/// one `End`.
#[derive(Debug)]
pub enum Message {
    /// Rows, moved (never copied) from sender to receiver.
    Batch {
        /// The rows.
        batch: Batch,
        /// The receiver's input (0, or 1 for the right input of a join).
        port: u8,
        /// Which upstream instance.
        sender: SenderId,
    },
    /// The sender promises no more rows with event time at or before `time`.
    Watermark {
        /// Which upstream instance.
        sender: SenderId,
        /// The watermark, in epoch milliseconds.
        time: i64,
    },
    /// The sender has no rows for now and should not hold the watermark back.
    Idle {
        /// Which upstream instance.
        sender: SenderId,
    },
    /// Checkpoint `id`: everything the sender sent before belongs to it, everything after to
    /// the next (see `crate::checkpoint`).
    Barrier {
        /// Which upstream instance.
        sender: SenderId,
        /// The checkpoint.
        id: u64,
    },
    /// The sender has no more rows; a task finishes after an `End` from every sender.
    End {
        /// Which upstream instance.
        sender: SenderId,
    },
}
