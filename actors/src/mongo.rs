//! What the MongoDB source and sink share (ADR 0009): the client made from the URI (with
//! `${NAME}` read from the environment, never logged), the address errors name, the retried
//! `ping` a run starts with, how driver errors sort into transient and permanent, and values
//! between rows and BSON.
//!
//! The driver's blocking API keeps its own tokio runtime; the data cores call it on glommio's
//! blocking threads, one request at a time per instance, so a slow server slows the pipeline.

use std::borrow::Cow;
use std::time::Duration;

use mongodb::bson::{self, doc, spec::BinarySubtype, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind};
use mongodb::options::ClientOptions;
use mongodb::sync::Client;
use wire_core::frontend::expr::Datum;
use wire_core::record::schema::Field;
use wire_core::DataType;

use crate::retry::RetryState;
use crate::Error;

/// How long the driver looks for a server before an attempt fails (then [`RetryState`]
/// decides whether to try again).
const SELECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// A connector's client and how errors name it.
pub(crate) struct Server {
    /// ``mongodb sink `out` ``.
    pub(crate) what: String,
    /// `host:port[,host:port…]`, never the credentials.
    pub(crate) address: String,
    pub(crate) client: Client,
    /// How long unreachable servers and transient errors are retried.
    pub(crate) deadline: Duration,
}

impl Server {
    /// The client for `uri` (not yet connected: the driver connects on the first request).
    pub(crate) fn new(what: String, uri: &str, deadline_ms: u64) -> Result<Server, Error> {
        let uri = crate::sink::substitute_env(uri, &what).map_err(Error::Connector)?;
        let mut options = ClientOptions::parse(uri.as_str()).run().map_err(|err| {
            Error::Connector(format!("{what}: uri is not a MongoDB URI: {}", cause(&err)))
        })?;
        let address = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        options.app_name = Some("wire".into());
        options.server_selection_timeout = Some(SELECTION_TIMEOUT);
        options.connect_timeout = Some(SELECTION_TIMEOUT);
        let client = Client::with_options(options)
            .map_err(|err| Error::Connector(format!("{what}: {}", cause(&err))))?;
        Ok(Server {
            what,
            address,
            client,
            deadline: Duration::from_millis(deadline_ms),
        })
    }

    /// `the server at host:port`, as errors say it.
    pub(crate) fn place(&self) -> String {
        format!("the server at {}", self.address)
    }

    /// Runs `request` until it succeeds, fails for good, or transient failures outlast the
    /// deadline; `retried` is called before each retry. Blocking.
    pub(crate) fn retried<T>(
        &self,
        retried: &dyn Fn(),
        mut request: impl FnMut() -> Result<T, DriverError>,
    ) -> Result<T, Error> {
        let place = self.place();
        let mut state = RetryState::new(&self.what, &place, self.deadline);
        loop {
            state.attempt();
            match request() {
                Ok(value) => return Ok(value),
                Err(err) if !transient(&err) => return Err(self.refused(&err)),
                Err(err) => {
                    let why = cause(&err);
                    let wait = state.failed(&why, why.clone())?;
                    retried();
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Waits (up to the deadline) for the server to answer a `ping`.
    pub(crate) fn ping(&self, retried: &dyn Fn()) -> Result<(), Error> {
        let admin = self.client.database("admin");
        self.retried(retried, || admin.run_command(doc! {"ping": 1}).run())
            .map(drop)
    }

    /// The error for a request the server refused for good.
    pub(crate) fn refused(&self, err: &DriverError) -> Error {
        let what = match *err.kind {
            ErrorKind::Authentication { .. } => "refused the credentials",
            _ => "refused the request",
        };
        Error::Connector(format!(
            "{}: {} {what}: {}",
            self.what,
            self.place(),
            cause(err)
        ))
    }
}

/// Server error codes worth another attempt: network, not-primary, shutting down, overloaded
/// and time-limit errors.
pub(crate) const TRANSIENT_CODES: &[i32] = &[
    6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 462,
];

/// Whether `err` may go away by itself (the server unreachable, restarting, overloaded).
pub(crate) fn transient(err: &DriverError) -> bool {
    use mongodb::error::{RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR, SYSTEM_OVERLOADED_ERROR};
    if [
        RETRYABLE_WRITE_ERROR,
        RETRYABLE_ERROR,
        SYSTEM_OVERLOADED_ERROR,
    ]
    .iter()
    .any(|label| err.contains_label(label))
    {
        return true;
    }
    match &*err.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        _ => false,
    }
}

/// What went wrong, short: the I/O error behind a server selection timeout
/// (`Connection refused (os error 111)`) rather than the driver's whole topology description.
pub(crate) fn cause(err: &DriverError) -> String {
    match &*err.kind {
        ErrorKind::ServerSelection { message, .. } => {
            let inner = message
                .split_once("Error: Kind: ")
                .map(|(_, rest)| rest.split(", labels").next().unwrap_or(rest));
            match inner {
                Some(text) => text.trim_start_matches("I/O error: ").to_string(),
                None => message.chars().take(300).collect(),
            }
        }
        ErrorKind::Command(command) => {
            format!(
                "{} (code {} {})",
                command.message, command.code, command.code_name
            )
        }
        ErrorKind::Io(io) => io.to_string(),
        _ => err.kind.to_string().chars().take(300).collect(),
    }
}

/// `datum` as a BSON value: timestamps as dates, bytes as generic binary.
pub(crate) fn to_bson(datum: &Datum<'_>) -> Bson {
    match datum {
        Datum::Null => Bson::Null,
        Datum::I64(v) => Bson::Int64(*v),
        Datum::F64(v) => Bson::Double(*v),
        Datum::Bool(v) => Bson::Boolean(*v),
        Datum::Str(text) => Bson::String(text.to_string()),
        Datum::Bytes(bytes) => Bson::Binary(bson::Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        }),
        Datum::Timestamp(ms) => Bson::DateTime(bson::DateTime::from_millis(*ms)),
    }
}

/// Field `field` of `doc` as a value of the field's type; the error says what is wrong
/// (missing, null, or of another BSON type).
pub(crate) fn from_bson<'d>(doc: &'d Document, field: &Field) -> Result<Datum<'d>, String> {
    let name = &field.name;
    let value = match doc.get(name) {
        None | Some(Bson::Null) if field.nullable => return Ok(Datum::Null),
        None => return Err(format!("field `{name}` is missing")),
        Some(Bson::Null) => return Err(format!("field `{name}` is null")),
        Some(value) => value,
    };
    let datum = match (field.data_type, value) {
        (DataType::I64, Bson::Int32(v)) => Some(Datum::I64(i64::from(*v))),
        (DataType::I64, Bson::Int64(v)) => Some(Datum::I64(*v)),
        (DataType::I64, Bson::Double(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => {
            Some(Datum::I64(*v as i64))
        }
        (DataType::F64, Bson::Double(v)) => Some(Datum::F64(*v)),
        (DataType::F64, Bson::Int32(v)) => Some(Datum::F64(f64::from(*v))),
        (DataType::F64, Bson::Int64(v)) => Some(Datum::F64(*v as f64)),
        (DataType::Bool, Bson::Boolean(v)) => Some(Datum::Bool(*v)),
        (DataType::String, Bson::String(text)) => Some(Datum::Str(Cow::Borrowed(text))),
        (DataType::String, Bson::ObjectId(id)) => Some(Datum::Str(Cow::Owned(id.to_hex()))),
        (DataType::Bytes, Bson::Binary(binary)) => Some(Datum::Bytes(Cow::Borrowed(&binary.bytes))),
        (DataType::Timestamp, Bson::DateTime(at)) => Some(Datum::Timestamp(at.timestamp_millis())),
        (DataType::Timestamp, Bson::Int64(ms)) => Some(Datum::Timestamp(*ms)),
        _ => None,
    };
    datum.ok_or_else(|| {
        format!(
            "field `{name}`: expected {}, found BSON {:?}",
            field.data_type,
            value.element_type()
        )
    })
}

/// `doc` as relaxed extended JSON, for dead letters.
pub(crate) fn to_json(doc: &Document) -> Vec<u8> {
    Bson::Document(doc.clone())
        .into_relaxed_extjson()
        .to_string()
        .into_bytes()
}

/// `value` as the text a checkpoint position keeps (`SourcePosition::token`): its BSON, base64.
pub(crate) fn encode_position(value: Bson) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    // Writing a document to a Vec cannot fail.
    let _ = doc! {"v": value}.to_writer(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The value [`encode_position`] kept; `None` when `text` is not one.
pub(crate) fn decode_position(text: &str) -> Option<Bson> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let doc = Document::from_reader(bytes.as_slice()).ok()?;
    doc.get("v").cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_values_convert_by_the_field_type() {
        let token = Bson::Document(doc! {"_data": "8263A1"});
        let kept = decode_position(&encode_position(token.clone()));
        assert_eq!(kept.as_ref(), Some(&token));
        assert_eq!(decode_position("not base64!"), None);
        // A change stream's resume token goes through the same BSON value.
        let resume: mongodb::change_stream::event::ResumeToken =
            bson::from_bson(token.clone()).expect("a token");
        assert_eq!(bson::to_bson(&resume).ok(), Some(token));
        let doc = doc! {"n": 3_i32, "x": 2.5, "at": bson::DateTime::from_millis(7), "s": "a"};
        let field = |name: &str, data_type, nullable| Field {
            name: name.into(),
            data_type,
            nullable,
        };
        assert_eq!(
            from_bson(&doc, &field("n", DataType::I64, false)),
            Ok(Datum::I64(3))
        );
        assert_eq!(
            from_bson(&doc, &field("at", DataType::Timestamp, false)),
            Ok(Datum::Timestamp(7))
        );
        assert_eq!(
            from_bson(&doc, &field("gone", DataType::I64, true)),
            Ok(Datum::Null)
        );
        let wrong = from_bson(&doc, &field("s", DataType::I64, false));
        assert!(wrong.is_err_and(|e| e.starts_with("field `s`: expected i64")));
        assert_eq!(
            from_bson(&doc, &field("gone", DataType::F64, false)),
            Err("field `gone` is missing".to_string())
        );
    }
}
