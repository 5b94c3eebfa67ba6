//! Calendar arithmetic for timestamps (milliseconds since the Unix epoch, UTC).
//!
//! Proleptic Gregorian calendar, no leap seconds, no time zones beyond fixed offsets when
//! parsing. Pure functions; no clock is read here.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (may be negative or above 9999).
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Millisecond, 0–999.
    pub milli: u32,
}

impl DateTime {
    /// Splits `ms` since the epoch into calendar fields.
    pub fn from_millis(ms: i64) -> DateTime {
        let days = ms.div_euclid(DAY_MS);
        let of_day = ms.rem_euclid(DAY_MS);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (of_day / 3_600_000) as u32,
            minute: (of_day / 60_000 % 60) as u32,
            second: (of_day / 1000 % 60) as u32,
            milli: (of_day % 1000) as u32,
        }
    }
}

/// The (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a calendar date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends `ms` as RFC 3339 in UTC with milliseconds: `2026-11-29T20:30:51.123Z`.
pub fn write_rfc3339(ms: i64, out: &mut Vec<u8>) {
    let t = DateTime::from_millis(ms);
    if (0..=9999).contains(&t.year) {
        push_digits(out, t.year as u32, 4);
    } else {
        out.extend_from_slice(t.year.to_string().as_bytes());
    }
    out.push(b'-');
    push_digits(out, t.month, 2);
    out.push(b'-');
    push_digits(out, t.day, 2);
    out.push(b'T');
    push_digits(out, t.hour, 2);
    out.push(b':');
    push_digits(out, t.minute, 2);
    out.push(b':');
    push_digits(out, t.second, 2);
    out.push(b'.');
    push_digits(out, t.milli, 3);
    out.push(b'Z');
}

/// `ms` as an RFC 3339 string (see [`write_rfc3339`]).
pub fn to_rfc3339(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339(ms, &mut out);
    // Only ASCII digits and separators were written.
    String::from_utf8(out).unwrap_or_default()
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for place in (0..width).rev() {
        out.push(b'0' + (value / 10u32.pow(place) % 10) as u8);
    }
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff…][Z|±HH:MM]` (a space may replace `T`; no
/// offset means UTC) into milliseconds since the epoch. Fractions beyond milliseconds are
/// truncated. `None` when the text is not such a time or a field is out of range.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    let date_ms = days_from_civil(i64::from(year), month, day) * DAY_MS;
    if b.len() == 10 {
        return Some(date_ms);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut milli = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                milli = milli * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            milli *= 10;
        }
    }
    let offset_ms = match b.get(at..)? {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num(at + 1..at + 3)?;
            let m = num(at + 4..at + 6)?;
            let _ = (h1, h2, m1, m2);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = i64::from(h * 60 + m) * 60_000;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let time_ms =
        i64::from(hour) * 3_600_000 + i64::from(minute) * 60_000 + i64::from(second) * 1000;
    Some(date_ms + time_ms + i64::from(milli) - offset_ms)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_format_and_parse() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (1_795_984_251_123, "2026-11-29T20:30:51.123Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(to_rfc3339(ms), text);
            assert_eq!(parse_rfc3339(text), Some(ms), "{text}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-29T21:30:51.123+01:00"),
            Some(1_795_984_251_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-29 20:30:51"),
            Some(1_795_984_251_000)
        );
        assert_eq!(parse_rfc3339("2026-11-29"), Some(1_795_910_400_000));
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2026-11-29T25:00:00Z",
            "2026-11-29T20:30:51.Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
