//! Calendar arithmetic for timestamps (milliseconds since the Unix epoch, UTC).
//!
//! Proleptic Gregorian calendar, no leap seconds, no time zones beyond fixed offsets when
//! parsing. Pure functions; no clock is read here.
//! Event time built on it lives below: [`watermark`] and [`window`].

pub mod watermark;
pub mod window;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
const MS_PER_DAY: i64 = DAY_MS;

/// A bare `YYYY-MM-DD` as its midnight, UTC.
fn parse_date(b: &[u8]) -> Result<i64, &'static str> {
    let year = digits(&b[0..4])?;
    expect_byte(b[4], b'-')?;
    let month = digits(&b[5..7])?;
    expect_byte(b[7], b'-')?;
    let day = digits(&b[8..10])?;
    check_range(month, 1, 12, "month out of range")?;
    check_range(day, 1, days_in_month(year, month), "day out of range")?;
    Ok(days_from_civil(year, month, day) * MS_PER_DAY)
}

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (may be negative or above 9999).
    pub year: i64,
    /// Month, 1–12.
    pub month: i64,
    /// Day of the month, 1–31.
    pub day: i64,
    /// Hour, 0–23.
    pub hour: i64,
    /// Minute, 0–59.
    pub minute: i64,
    /// Second, 0–59.
    pub second: i64,
    /// Millisecond, 0–999.
    pub milli: i64,
}

impl DateTime {
    /// Splits `ms` since the epoch into calendar fields.
    pub fn from_millis(ms: i64) -> DateTime {
        let of_day = ms.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
        DateTime {
            year,
            month,
            day,
            hour: of_day / 3_600_000,
            minute: of_day / 60_000 % 60,
            second: of_day / 1000 % 60,
            milli: of_day % 1000,
        }
    }
}

/// `ms` as an RFC 3339 string, or as the decimal milliseconds when the year is outside
/// 0000–9999 (which [`parse_rfc3339`] does not read, but casts and readers of integers do).
pub fn to_rfc3339(ms: i64) -> String {
    match format_rfc3339(ms) {
        Some(text) => text.iter().map(|b| char::from(*b)).collect(),
        None => ms.to_string(),
    }
}

/// Formats epoch milliseconds as an RFC 3339 UTC timestamp with milliseconds, such as
/// `2026-11-29T20:30:51.123Z`, or `None` when the year falls outside 0000–9999.
///
/// ```
/// use wire_core::time::format_rfc3339;
/// assert_eq!(&format_rfc3339(-1).unwrap(), b"1969-12-31T23:59:59.999Z");
/// assert_eq!(format_rfc3339(i64::MAX), None);
/// ```
pub fn format_rfc3339(ms: i64) -> Option<[u8; 24]> {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let ms_of_day = ms.rem_euclid(MS_PER_DAY);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    put_digits(&mut text[0..4], year);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    put_digits(&mut text[11..13], ms_of_day / 3_600_000);
    put_digits(&mut text[14..16], ms_of_day / 60_000 % 60);
    put_digits(&mut text[17..19], ms_of_day / 1_000 % 60);
    put_digits(&mut text[20..23], ms_of_day % 1_000);
    Some(text)
}

/// Parses an RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`, into epoch
/// milliseconds. The separator may also be `t` or a space; without an offset the time is UTC;
/// fraction digits past milliseconds are truncated; leap seconds (`:60`) are rejected.
///
/// ```
/// use wire_core::time::parse_rfc3339;
/// assert_eq!(parse_rfc3339("1970-01-01T01:00:00.5+01:00"), Ok(500));
/// assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), Err("day out of range"));
/// ```
pub fn parse_rfc3339(text: &str) -> Result<i64, &'static str> {
    let b = text.as_bytes();
    if b.len() == 10 {
        return parse_date(b);
    }
    if b.len() < 19 {
        return Err(if b.len() < 10 {
            "too short for YYYY-MM-DD"
        } else {
            "too short for YYYY-MM-DDTHH:MM:SS"
        });
    }
    let year = digits(&b[0..4])?;
    expect_byte(b[4], b'-')?;
    let month = digits(&b[5..7])?;
    expect_byte(b[7], b'-')?;
    let day = digits(&b[8..10])?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected `T` between date and time");
    }
    let hour = digits(&b[11..13])?;
    expect_byte(b[13], b':')?;
    let minute = digits(&b[14..16])?;
    expect_byte(b[16], b':')?;
    let second = digits(&b[17..19])?;
    let (millis, pos) = fraction_ms(b, 19)?;
    let offset_min = utc_offset_min(&b[pos..])?;
    check_range(month, 1, 12, "month out of range")?;
    check_range(day, 1, days_in_month(year, month), "day out of range")?;
    check_range(hour, 0, 23, "hour out of range")?;
    check_range(minute, 0, 59, "minute out of range")?;
    check_range(second, 0, 59, "second out of range")?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Ok(seconds * 1_000 + millis)
}

/// The civil date (year, month, day) of a day count since 1970-01-01, proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`, which counts in 400-year eras of 146,097 days.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Writes `value` as zero-padded decimal filling `slot`.
fn put_digits(slot: &mut [u8], mut value: i64) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn digits(bytes: &[u8]) -> Result<i64, &'static str> {
    bytes.iter().try_fold(0, |acc, &byte| {
        if byte.is_ascii_digit() {
            Ok(acc * 10 + i64::from(byte - b'0'))
        } else {
            Err("expected a digit")
        }
    })
}

fn expect_byte(found: u8, expected: u8) -> Result<(), &'static str> {
    match (found == expected, expected) {
        (true, _) => Ok(()),
        (false, b'-') => Err("expected `-` in the date"),
        (false, _) => Err("expected `:` in the time"),
    }
}

fn check_range(value: i64, min: i64, max: i64, message: &'static str) -> Result<(), &'static str> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(message)
    }
}

/// Milliseconds of an optional `.fff…` fraction at `pos`, and the position after it.
fn fraction_ms(b: &[u8], mut pos: usize) -> Result<(i64, usize), &'static str> {
    if b.get(pos) != Some(&b'.') {
        return Ok((0, pos));
    }
    pos += 1;
    let start = pos;
    let mut millis = 0;
    while let Some(byte) = b.get(pos).filter(|byte| byte.is_ascii_digit()) {
        if pos - start < 3 {
            millis = millis * 10 + i64::from(byte - b'0');
        }
        pos += 1;
    }
    match pos - start {
        0 => Err("expected digits after `.`"),
        1 => Ok((millis * 100, pos)),
        2 => Ok((millis * 10, pos)),
        _ => Ok((millis, pos)),
    }
}

/// Minutes east of UTC of the rest of the timestamp: empty, `Z`, or `±HH:MM`.
fn utc_offset_min(rest: &[u8]) -> Result<i64, &'static str> {
    let sign = match rest {
        [] | [b'Z' | b'z'] => return Ok(0),
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return Err("expected `Z`, `+HH:MM` or `-HH:MM` after the time"),
    };
    let hours = digits(&rest[1..3])?;
    let minutes = digits(&rest[4..6])?;
    check_range(hours, 0, 23, "offset hour out of range")?;
    check_range(minutes, 0, 59, "offset minute out of range")?;
    Ok(sign * (hours * 60 + minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields_and_text() {
        let t = DateTime::from_millis(1_795_984_251_123);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.milli),
            (2026, 11, 29, 20, 30, 51, 123)
        );
        assert_eq!(to_rfc3339(1_795_984_251_123), "2026-11-29T20:30:51.123Z");
        assert_eq!(to_rfc3339(i64::MAX), i64::MAX.to_string());
        assert_eq!(DateTime::from_millis(-1).year, 1969);
        assert_eq!(parse_rfc3339("2026-11-29"), Ok(1_795_910_400_000));
        assert_eq!(parse_rfc3339("2026-11-3"), Err("too short for YYYY-MM-DD"));
    }
}
