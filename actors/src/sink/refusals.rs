//! Rows an external system refuses (a 4xx bulk item, a document that does not fit the
//! mapping), handled as the sink's `on_error` says: `fail` ends the pipeline with the system's
//! error, `skip` drops and counts the row, `dead_letter` writes it to the dead-letter file or
//! topic ([`crate::dead_letter`]) with the error and the place, and counts it.
//!
//! A dead-letter line is `{"sink": …, "error": …, "place": …, "row": {…}}` (`"source"`
//! for a source's); a letter in a topic is the row's JSON with the rest in headers. The
//! letters are synced (acknowledged by the broker) before the sink acks a checkpoint; they are
//! at-least-once (a replay after a crash may write a row's letter again).

use std::sync::Arc;
use std::time::Duration;

use wire_core::frontend::spec::{SinkErrors, SinkOnError};

use crate::dead_letter::{DeadLetters, Letter};
use crate::probe::{Counters, RunProbe};
use crate::Error;

/// Where a connector instance's refusals and retries are counted: its node's counters on its
/// core (`rejected` for refused rows, `late`, which sources and sinks have no use for, for
/// retried requests).
#[derive(Clone)]
pub(crate) struct Tally {
    probe: Arc<RunProbe>,
    node: usize,
    core: usize,
}

impl Tally {
    pub(crate) fn new(probe: Arc<RunProbe>, node: usize, core: usize) -> Tally {
        Tally { probe, node, core }
    }

    fn counters(&self) -> &Counters {
        &self.probe.nodes[self.node].cores[self.core]
    }

    /// Counts `n` retried requests or items.
    pub(crate) fn retried(&self, n: u64) {
        Counters::add(&self.counters().late, n);
    }

    fn refused(&self) {
        Counters::add(&self.counters().rejected, 1);
    }
}

/// One sink instance's handling of refused rows (or a source's of records that do not fit).
pub(crate) struct Refusals {
    /// The key that names the connector in a letter: `sink`, or `source`.
    role: &'static str,
    on_error: SinkOnError,
    dead_letters: Option<DeadLetters>,
    /// Where refusals are counted; none while settling a sink before the cores start.
    tally: Option<Tally>,
}

impl Refusals {
    /// Opens the dead-letter file or topic when `errors` asks for one, for connector `what`;
    /// a topic's letters not acknowledged within `timeout` fail [`Refusals::sync`].
    pub(super) fn open(
        errors: &SinkErrors,
        what: &str,
        timeout: Duration,
        tally: Option<Tally>,
    ) -> Result<Refusals, Error> {
        let dead_letters = match (&errors.on_error, &errors.dead_letter) {
            (SinkOnError::DeadLetter, Some(to)) => Some(DeadLetters::open(to, what, timeout)?),
            _ => None,
        };
        Ok(Refusals {
            role: "sink",
            on_error: errors.on_error,
            dead_letters,
            tally,
        })
    }

    /// The same for a source: letters name it under `source`, and the source counts them.
    pub(crate) fn open_for_source(
        errors: &SinkErrors,
        what: &str,
        timeout: Duration,
    ) -> Result<Refusals, Error> {
        let mut refusals = Refusals::open(errors, what, timeout, None)?;
        refusals.role = "source";
        Ok(refusals)
    }

    /// Whether refused rows are written out (the caller then keeps each row's JSON).
    pub(super) fn keeps_rows(&self) -> bool {
        self.dead_letters.is_some()
    }

    /// Handles one refused row: `Err` (naming `what`, the place and the error) with
    /// `on_error: fail`, otherwise counts it and, with `dead_letter`, writes it out. `row` is
    /// the row as a JSON object (empty when not kept).
    pub(crate) fn refuse(
        &mut self,
        what: &str,
        error: &str,
        place: &str,
        row: &[u8],
    ) -> Result<(), Error> {
        let row = row.strip_suffix(b"\n").unwrap_or(row);
        self.refuse_record(what, (error, place), None, row, row)
    }

    /// The same for a record refused as it was sent (a Kafka sink's, by the broker): a topic's
    /// letter is the record itself, `key` and `value`; a file's line holds `json` as the row.
    pub(crate) fn refuse_record(
        &mut self,
        what: &str,
        (error, place): (&str, &str),
        key: Option<&[u8]>,
        value: &[u8],
        json: &[u8],
    ) -> Result<(), Error> {
        match self.on_error {
            SinkOnError::Fail => {
                return Err(Error::Connector(format!("{what}: {place}: {error}")));
            }
            SinkOnError::Skip => {
                tracing::debug!(sink = what, place, error, "refused row skipped");
            }
            SinkOnError::DeadLetter => {
                if let Some(dead_letters) = self.dead_letters.as_mut() {
                    let letter = Letter {
                        role: self.role,
                        what,
                        error,
                        place,
                        key,
                        value,
                        headers: &[],
                    };
                    let line = || line((self.role, what), error, place, json);
                    dead_letters.send(&letter, line)?;
                }
            }
        }
        if let Some(tally) = &self.tally {
            tally.refused();
        }
        Ok(())
    }

    /// Makes the dead letters written so far durable (blocking).
    pub(crate) fn sync(&self) -> Result<(), Error> {
        match &self.dead_letters {
            Some(dead_letters) => dead_letters.sync(),
            None => Ok(()),
        }
    }

    /// The same on a data core.
    pub(crate) async fn sync_async(&self) -> Result<(), Error> {
        match &self.dead_letters {
            Some(dead_letters) => dead_letters.sync_async().await,
            None => Ok(()),
        }
    }
}

/// The instance's refusals, shared with its blocking requests.
pub(super) fn lock(
    refusals: &std::sync::Mutex<Refusals>,
) -> Result<std::sync::MutexGuard<'_, Refusals>, Error> {
    refusals
        .lock()
        .map_err(|_| Error::Connector("dead-letter lock poisoned".into()))
}

/// One dead-letter line.
fn line((role, connector): (&str, &str), error: &str, place: &str, row: &[u8]) -> Vec<u8> {
    let text = |s: &str| serde_json::Value::from(s).to_string();
    let mut line = format!(
        "{{\"{role}\":{},\"error\":{},\"place\":{},\"row\":",
        text(connector),
        text(error),
        text(place)
    )
    .into_bytes();
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    line.extend_from_slice(if row.is_empty() { b"null" } else { row });
    line.extend_from_slice(b"}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_is_one_json_line_with_the_error_place_and_row() {
        let line = line(
            ("sink", "elasticsearch sink `out`"),
            "mapper_parsing_exception: \"x\"",
            "index `i`",
            b"{\"a\":1}\n",
        );
        let text = String::from_utf8(line).expect("utf-8");
        assert_eq!(text.matches('\n').count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["error"], "mapper_parsing_exception: \"x\"");
        assert_eq!(value["place"], "index `i`");
        assert_eq!(value["row"]["a"], 1);
    }
}
