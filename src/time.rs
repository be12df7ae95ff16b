//! Time as the archive records it: seconds and nanoseconds since the Unix epoch, UTC,
//! with RFC 3339 parsing and printing (no time zone database: offsets are explicit).

use bincode::{Decode, Encode};
use serde::Serialize;

/// Seconds and nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: d.as_secs() as i64, nanos: d.subsec_nanos() }
    }

    /// Parses RFC 3339 (`2026-11-21T20:18:45Z`, `2026-11-21T21:18:45+01:00`, fractions
    /// of a second allowed; a space may replace the `T`) or `@SECONDS` since the epoch.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let bad = || format!("{text:?} is not a time (use RFC 3339, e.g. 2026-11-21T20:18:45Z, or @SECONDS)");
        if let Some(secs) = text.strip_prefix('@') {
            return secs.parse().map(|secs| Timestamp { secs, nanos: 0 }).map_err(|_| bad());
        }
        let b = text.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let num = |range: std::ops::Range<usize>| {
            text.get(range)
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(bad)
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days_in_month = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        // Leap seconds (:60) are refused: Unix time cannot name them.
        if !(1..=12).contains(&month)
            || !(1..=days_in_month).contains(&day)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(bad());
        }
        let mut rest = &text[19..];
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
            nanos = padded.parse().map_err(|_| bad())?;
            rest = &fraction[digits..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6
                && matches!(rest.as_bytes()[0], b'+' | b'-')
                && rest.as_bytes()[3] == b':' =>
            {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let hours: i64 = rest[1..3].parse().ok().filter(|h| (0..=23).contains(h)).ok_or_else(bad)?;
                let minutes: i64 =
                    rest[4..6].parse().ok().filter(|m| (0..=59).contains(m)).ok_or_else(bad)?;
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(year, month, day);
        Ok(Timestamp { secs: days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos })
    }

    /// UTC in RFC 3339, e.g. `2026-11-21T20:18:45Z` (civil date from days, Hinnant).
    pub fn to_rfc3339(&self) -> String {
        let rem = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(self.secs.div_euclid(86_400));
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01: the inverse of `days_from_civil`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_back() {
        for secs in [0, 951_782_400, 1_795_292_325, -1, 4_102_444_800] {
            let t = Timestamp { secs, nanos: 0 };
            assert_eq!(Timestamp::parse(&t.to_rfc3339()), Ok(t));
        }
        let t = Timestamp::parse("2026-11-21T21:18:45.5+01:00").unwrap();
        assert_eq!((t.secs, t.nanos), (1_795_292_325, 500_000_000));
        assert_eq!(Timestamp::parse("@12").unwrap().secs, 12);
        for bad in [
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-21T20:18:45",
            "@x",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2030-01-01T23:59:60Z",
            "2026-11-21T20:18:45+99:99",
            "-001-11-21T20:18:45Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(Timestamp { secs: 0, nanos: 0 }.to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp { secs: 951_782_400, nanos: 0 }.to_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(Timestamp { secs: 1_795_292_325, nanos: 0 }.to_rfc3339(), "2026-11-21T20:18:45Z");
        assert_eq!(Timestamp { secs: -1, nanos: 0 }.to_rfc3339(), "1969-12-31T23:59:59Z");
    }
}
