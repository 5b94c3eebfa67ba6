//! End-to-end latency: reading a sink's JSON lines back and timing each row's send stamp.
//!
//! Rows carry their scheduled send time (unix nanoseconds) in an `i64` field; a sink writes
//! them as JSON lines (`{"name":value,...}`), and [`E2eRecorder`] records, per line, the time it
//! was read minus that stamp. The line parser is a small validating JSON scanner that skips
//! every value but the one field, so it keeps up with a sink writing a million lines a second.

use std::fmt;

use hdrhistogram::Histogram;

/// A line of the sink's output that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The line number, counting from 1.
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LineError {}

/// The integer value of top-level field `field` of the JSON object `line`.
///
/// The whole line must be one valid JSON object; the field must be present and a JSON integer
/// in `i64` range (`1.0`, `"1"` and `null` are errors).
///
/// ```
/// assert_eq!(wire_loadgen::stamp_of(r#"{"a":"x","sent_at":12}"#, "sent_at"), Ok(12));
/// assert!(wire_loadgen::stamp_of(r#"{"a":"x"}"#, "sent_at").is_err());
/// ```
pub fn stamp_of(line: &str, field: &str) -> Result<i64, String> {
    let mut scan = Scanner {
        bytes: line.as_bytes(),
        pos: 0,
    };
    scan.ws();
    scan.expect(b'{', "a JSON object (`{`)")?;
    let mut found: Option<i64> = None;
    scan.ws();
    if scan.peek() == Some(b'}') {
        scan.pos += 1;
    } else {
        loop {
            scan.ws();
            let key_is_field = scan.string(Some(field))?;
            scan.ws();
            scan.expect(b':', "`:` after the key")?;
            scan.ws();
            if key_is_field && found.is_none() {
                found = Some(scan.integer(field)?);
            } else {
                scan.value(0)?;
            }
            scan.ws();
            match scan.peek() {
                Some(b',') => scan.pos += 1,
                Some(b'}') => {
                    scan.pos += 1;
                    break;
                }
                _ => return Err(scan.error("`,` or `}` in the object")),
            }
        }
    }
    scan.ws();
    if scan.pos != scan.bytes.len() {
        return Err(scan.error("the end of the line after the object"));
    }
    found.ok_or_else(|| format!("no field `{field}` in the object"))
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Nesting deeper than this is refused (the sink writes flat objects).
const DEPTH_MAX: usize = 64;

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &str) -> String {
        match self.peek() {
            Some(byte) => format!(
                "expected {expected} at column {}, found `{}`",
                self.pos + 1,
                char::from(byte).escape_default()
            ),
            None => format!(
                "expected {expected} at column {}, found the end of the line",
                self.pos + 1
            ),
        }
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// Scans a string; returns whether it equals `compare` (keys with escapes never match:
    /// Wire writes field names unescaped unless they hold quotes, backslashes or controls).
    fn string(&mut self, compare: Option<&str>) -> Result<bool, String> {
        self.expect(b'"', "a string")?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.next() {
                None => return Err(self.error("the closing `\"` of a string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1;
                        }
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
                                    return Err(self.error("four hex digits after `\\u`"));
                                }
                                self.pos += 1;
                            }
                        }
                        _ => {
                            return Err(self.error("a valid escape after `\\`"));
                        }
                    }
                }
                Some(byte) if byte < 0x20 => {
                    self.pos -= 1;
                    return Err(self.error("no control character inside a string"));
                }
                Some(_) => {}
            }
        }
        let text = &self.bytes[start..self.pos - 1];
        Ok(!escaped && compare.is_some_and(|c| c.as_bytes() == text))
    }

    /// Scans a number; returns whether it was an integer (no fraction or exponent).
    fn number(&mut self) -> Result<bool, String> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => return Err(self.error("a digit")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(integer)
    }

    fn digits(&mut self) -> Result<(), String> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error("a digit"));
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        Ok(())
    }

    fn integer(&mut self, field: &str) -> Result<i64, String> {
        let start = self.pos;
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(format!(
                "field `{field}` at column {} is not an integer",
                start + 1
            ));
        }
        let integer = self.number()?;
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        if !integer {
            return Err(format!(
                "field `{field}` at column {} is `{text}`, not an integer",
                start + 1
            ));
        }
        text.parse().map_err(|_| {
            format!(
                "field `{field}` at column {} is `{text}`, out of i64 range",
                start + 1
            )
        })
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), String> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("a JSON value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > DEPTH_MAX {
            return Err(self.error("less nesting"));
        }
        match self.peek() {
            Some(b'"') => self.string(None).map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'[') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.error("`,` or `]` in the array")),
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string(None)?;
                    self.ws();
                    self.expect(b':', "`:` after the key")?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(self.error("`,` or `}` in the object")),
                    }
                }
            }
            _ => Err(self.error("a JSON value")),
        }
    }
}

/// Records end-to-end latency from a stream of JSON lines read in chunks.
///
/// Each complete line's stamp (unix nanoseconds) is subtracted from the time its chunk was
/// read; the difference goes into a histogram in microseconds. Lines stamped before `since_ns`
/// (rows of an earlier run still in a file) are counted as stale and not recorded. Blank lines
/// are skipped. A line split across chunks is joined and timed when its end arrives.
#[derive(Debug)]
pub struct E2eRecorder {
    field: String,
    since_ns: i64,
    /// Latency in microseconds, at least 1.
    pub latency_us: Histogram<u64>,
    /// Rows recorded.
    pub rows: u64,
    /// Rows stamped before `since_ns`.
    pub stale: u64,
    /// Rows whose stamp lies after the time they were read (clock trouble); recorded as 1 µs.
    pub future: u64,
    line_no: u64,
    partial: Vec<u8>,
}

impl E2eRecorder {
    /// A recorder of field `field` that ignores stamps before `since_ns`.
    pub fn new(field: &str, since_ns: i64) -> E2eRecorder {
        E2eRecorder {
            field: field.to_owned(),
            since_ns,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
            rows: 0,
            stale: 0,
            future: 0,
            line_no: 0,
            partial: Vec::new(),
        }
    }

    /// Lines seen so far (complete ones, blank lines included).
    pub fn lines(&self) -> u64 {
        self.line_no
    }

    /// Feeds a chunk read at `now_ns` (unix nanoseconds).
    pub fn feed(&mut self, chunk: &[u8], now_ns: i64) -> Result<(), LineError> {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, now_ns)?;
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                let result = self.line(&joined, now_ns);
                joined.clear();
                self.partial = joined;
                result?;
            }
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Ends the stream: a final line without a newline is read as a line.
    pub fn finish(&mut self, now_ns: i64) -> Result<(), LineError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let last = std::mem::take(&mut self.partial);
        self.line(&last, now_ns)
    }

    fn line(&mut self, line: &[u8], now_ns: i64) -> Result<(), LineError> {
        self.line_no += 1;
        let line_no = self.line_no;
        let text = std::str::from_utf8(line).map_err(|err| LineError {
            line: line_no,
            message: format!("not UTF-8 ({err})"),
        })?;
        if text.trim().is_empty() {
            return Ok(());
        }
        let stamp = stamp_of(text, &self.field).map_err(|message| LineError {
            line: line_no,
            message,
        })?;
        if stamp < self.since_ns {
            self.stale += 1;
            return Ok(());
        }
        if stamp > now_ns {
            self.future += 1;
        }
        let us = (now_ns.saturating_sub(stamp) / 1000).max(1) as u64;
        self.latency_us.saturating_record(us);
        self.rows += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_found_among_other_values() {
        let line = r#"{"sensor":"a\"b,c\u00e9","value":41.5,"raw":[1,{"x":null},true],"sent_at":1764590000123456789}"#;
        assert_eq!(stamp_of(line, "sent_at"), Ok(1_764_590_000_123_456_789));
        assert_eq!(stamp_of(r#" { "sent_at" : -5 } "#, "sent_at"), Ok(-5));
        assert_eq!(stamp_of(r#"{"sent_at":0,"b":1e5}"#, "sent_at"), Ok(0));
        // The first occurrence wins.
        assert_eq!(stamp_of(r#"{"t":1,"t":2}"#, "t"), Ok(1));
        // A nested key of the same name is not the field.
        assert_eq!(stamp_of(r#"{"o":{"t":9},"t":3}"#, "t"), Ok(3));
    }

    #[test]
    fn malformed_lines_and_wrong_values_are_errors() {
        let err = |line: &str| stamp_of(line, "t").unwrap_err();
        assert!(err(r#"{"a":1}"#).contains("no field `t`"));
        assert!(err(r#"{}"#).contains("no field `t`"));
        assert!(err(r#"{"t":1.5}"#).contains("not an integer"));
        assert!(err(r#"{"t":"12"}"#).contains("not an integer"));
        assert!(err(r#"{"t":null}"#).contains("not an integer"));
        assert!(err(r#"{"t":99999999999999999999}"#).contains("out of i64 range"));
        assert!(err(r#"{"t":1"#).contains("`,` or `}`"));
        assert!(err(r#"{"t":1} x"#).contains("end of the line"));
        assert!(err(r#"[1,2]"#).contains("a JSON object"));
        assert!(err(r#"{"a":tru,"t":1}"#).contains("a JSON value"));
        assert!(err(r#"{"t":1,"a":"unterminated}"#).contains("closing"));
        assert!(err(r#"{"a":"\x","t":1}"#).contains("escape"));
        assert!(err(r#"{"a":01,"t":1}"#).contains("`,` or `}`"));
        assert!(err(r#"{"a" 1,"t":1}"#).contains("`:`"));
        assert!(err("").contains("a JSON object"));
        assert!(err(r#"{"a":[1,,2],"t":1}"#).contains("JSON value"));
        let deep = format!("{{\"a\":{}1{},\"t\":1}}", "[".repeat(100), "]".repeat(100));
        assert!(err(&deep).contains("nesting"));
    }

    #[test]
    fn the_recorder_times_lines_across_chunks_and_names_bad_lines() {
        let mut rec = E2eRecorder::new("sent_at", 1_000);
        let now = 5_000_000; // 5 ms after 0
        rec.feed(b"{\"sent_at\":3000000}\n{\"sent_at\":2", now)
            .unwrap();
        assert_eq!(rec.rows, 1);
        rec.feed(b"000000}\n\n{\"sent_at\":500}\n", now).unwrap();
        assert_eq!(rec.rows, 2);
        assert_eq!(rec.stale, 1); // 500 < since
        assert_eq!(rec.lines(), 4); // blank line counted
        assert_eq!(rec.latency_us.min(), 2000); // 5 ms - 3 ms
        assert_eq!(rec.latency_us.max(), 3001); // 5 ms - 2 ms, 3 significant digits
        let error = rec
            .feed(b"{\"sent_at\":4000000}\nnot json\n", now)
            .unwrap_err();
        assert_eq!(error.line, 6);
        assert!(
            error
                .to_string()
                .starts_with("line 6: expected a JSON object"),
            "{error}"
        );
        assert_eq!(rec.rows, 3);

        let mut rec = E2eRecorder::new("sent_at", 0);
        rec.feed(b"{\"sent_at\":1}\n{\"sent_at\":2}", 2_000_000)
            .unwrap();
        assert_eq!(rec.rows, 1);
        rec.finish(2_000_000).unwrap();
        assert_eq!(rec.rows, 2);
        let mut rec = E2eRecorder::new("sent_at", 0);
        rec.feed(b"{\"other\":1}\n", 10).unwrap_err();
        let mut rec = E2eRecorder::new("sent_at", 0);
        let error = rec.feed(b"{\"sent_at\":1}\n\xff\n", 10).unwrap_err();
        assert_eq!((error.line, error.message.contains("UTF-8")), (2, true));
        // A stamp after the read time is counted and recorded as 1 µs.
        let mut rec = E2eRecorder::new("sent_at", 0);
        rec.feed(b"{\"sent_at\":100}\n", 10).unwrap();
        assert_eq!((rec.future, rec.latency_us.max()), (1, 1));
    }
}
