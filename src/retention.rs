//! Which snapshots a retention policy keeps, with the reasons, as restic and borg users
//! know it. Applied to the snapshots of one set. Calendar periods are in UTC:
//! - `last N`: the N newest;
//! - `hourly/daily/weekly/monthly/yearly N`: for the N most recent periods that have
//!   snapshots, the newest snapshot of each (weeks start on Monday);
//! - `within D`: every snapshot taken within D before the newest one;
//! - `tag T`: every snapshot with tag T.
//!
//! A snapshot kept by any rule is kept. Every snapshot is complete on its own, so any
//! subset can be removed.

use crate::time::{civil_from_days, days_from_civil, Timestamp};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Span>,
    pub tags: Vec<String>,
}

impl Policy {
    /// A policy that keeps nothing would remove every snapshot: callers refuse it.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// A calendar span for `--keep-within`: years, months, days, hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub years: i64,
    pub months: i64,
    pub days: i64,
    pub hours: i64,
}

impl Span {
    /// `1y6m`, `30d`, `2w`, `12h`, combined in that order of units or any order.
    pub fn parse(text: &str) -> Result<Span, String> {
        let bad = || {
            format!("{text:?} is not a duration (use a number and a unit y, m, w, d or h, e.g. 1y6m or 30d)")
        };
        let mut span = Span::default();
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let (field, factor) = match c {
                'y' => (&mut span.years, 1),
                'm' => (&mut span.months, 1),
                'w' => (&mut span.days, 7),
                'd' => (&mut span.days, 1),
                'h' => (&mut span.hours, 1),
                _ => return Err(bad()),
            };
            *field = n.checked_mul(factor).and_then(|n| field.checked_add(n)).ok_or_else(bad)?;
        }
        if !digits.is_empty() || span == Span::default() {
            return Err(bad());
        }
        // Beyond ten thousand years the arithmetic on times could overflow.
        if span.years > 10_000 || span.months > 120_000 || span.days > 3_660_000 || span.hours > 87_840_000 {
            return Err(format!("{text:?} is longer than ten thousand years"));
        }
        Ok(span)
    }

    /// `time` moved back by the span, calendar-wise (a month back from March 31 is the
    /// last day of February).
    pub fn before(&self, time: Timestamp) -> Timestamp {
        let (year, month, day) = civil_from_days(time.secs.div_euclid(86_400));
        let months = year * 12 + (month - 1) - self.years * 12 - self.months;
        let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        let last_day =
            days_from_civil(year + (month / 12), month % 12 + 1, 1) - days_from_civil(year, month, 1);
        let days = days_from_civil(year, month, day.min(last_day)) - self.days;
        let secs = days * 86_400 + time.secs.rem_euclid(86_400) - self.hours * 3600;
        Timestamp { secs, nanos: time.nanos }
    }
}

/// What the policy decides for one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub keep: bool,
    /// The rules that keep it ("last", "daily", "tag v1", ...).
    pub reasons: Vec<String>,
}

/// One snapshot as the policy sees it.
pub struct Candidate<'a> {
    pub time: Timestamp,
    pub tags: &'a [String],
}

/// The calendar period a time falls in, as a number that grows with time.
type Period = fn(Timestamp) -> i64;

/// Decisions for `snapshots`, in the same order. They need not be sorted.
pub fn apply(policy: &Policy, snapshots: &[Candidate]) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    // Newest first; of equal times the later one given counts as newer, as `latest`
    // (the last of the list sorted by time and id) does.
    order.sort_by(|&a, &b| (snapshots[b].time, b).cmp(&(snapshots[a].time, a)));
    let mut reasons = vec![Vec::<String>::new(); snapshots.len()];
    let newest = order.first().map(|&i| snapshots[i].time);

    for &i in order.iter().take(policy.last as usize) {
        reasons[i].push("last".into());
    }
    let periods: [(&str, u32, Period); 5] = [
        ("hourly", policy.hourly, |t| t.secs.div_euclid(3600)),
        ("daily", policy.daily, |t| t.secs.div_euclid(86_400)),
        // Days since the epoch of the week's Monday (1970-01-01 was a Thursday).
        ("weekly", policy.weekly, |t| {
            let days = t.secs.div_euclid(86_400);
            days - (days + 3).rem_euclid(7)
        }),
        ("monthly", policy.monthly, |t| {
            let (year, month, _) = civil_from_days(t.secs.div_euclid(86_400));
            year * 12 + month
        }),
        ("yearly", policy.yearly, |t| civil_from_days(t.secs.div_euclid(86_400)).0),
    ];
    for (name, count, period) in periods {
        let mut last_period = None;
        let mut kept = 0;
        for &i in &order {
            if kept == count {
                break;
            }
            let p = period(snapshots[i].time);
            if last_period != Some(p) {
                reasons[i].push(name.into());
                last_period = Some(p);
                kept += 1;
            }
        }
    }
    if let (Some(span), Some(newest)) = (policy.within, newest) {
        let since = span.before(newest);
        for &i in &order {
            if snapshots[i].time >= since {
                reasons[i].push("within".into());
            }
        }
    }
    for tag in &policy.tags {
        for (i, s) in snapshots.iter().enumerate() {
            if s.tags.contains(tag) {
                reasons[i].push(format!("tag {tag}"));
            }
        }
    }
    reasons.into_iter().map(|reasons| Decision { keep: !reasons.is_empty(), reasons }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    /// Which of `times` (RFC 3339, any order) `policy` keeps, as their positions.
    fn kept(policy: &Policy, times: &[&str], tags: &[&[&str]]) -> Vec<usize> {
        let tags: Vec<Vec<String>> = (0..times.len())
            .map(|i| tags.get(i).map_or(vec![], |t| t.iter().map(|s| s.to_string()).collect()))
            .collect();
        let candidates: Vec<Candidate> =
            times.iter().zip(&tags).map(|(t, tags)| Candidate { time: at(t), tags }).collect();
        apply(policy, &candidates).iter().enumerate().filter(|(_, d)| d.keep).map(|(i, _)| i).collect()
    }

    /// Snapshots every 6 hours from 2026-01-01 to 2026-03-31.
    fn every_six_hours() -> Vec<String> {
        let start = at("2026-01-01T00:00:00Z").secs;
        (0..90 * 4).map(|i| Timestamp { secs: start + i * 6 * 3600, nanos: 0 }.to_rfc3339()).collect()
    }

    #[test]
    fn policies_keep_what_a_table_of_cases_expects() {
        let times =
            ["2026-03-01T10:00:00Z", "2026-03-01T11:30:00Z", "2026-03-01T11:45:00Z", "2026-03-02T09:00:00Z"];
        let cases: [(Policy, Vec<usize>); 7] = [
            (Policy { last: 2, ..Default::default() }, vec![2, 3]),
            (Policy { hourly: 2, ..Default::default() }, vec![2, 3]),
            (Policy { hourly: 3, ..Default::default() }, vec![0, 2, 3]),
            (Policy { daily: 5, ..Default::default() }, vec![2, 3]),
            (Policy { within: Some(Span::parse("22h").unwrap()), ..Default::default() }, vec![1, 2, 3]),
            (Policy { within: Some(Span::parse("23h").unwrap()), ..Default::default() }, vec![0, 1, 2, 3]),
            (Policy { last: 1, tags: vec!["keep".into()], ..Default::default() }, vec![0, 3]),
        ];
        for (policy, expected) in cases {
            assert_eq!(kept(&policy, &times, &[&["keep"]]), expected, "{policy:?}");
        }
    }

    #[test]
    fn calendar_periods_keep_the_newest_of_each() {
        let times = every_six_hours();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let n = times.len();
        let daily = kept(&Policy { daily: 3, ..Default::default() }, &times, &[]);
        assert_eq!(daily, [n - 9, n - 5, n - 1], "18:00 of the last three days");
        let monthly = kept(&Policy { monthly: 12, ..Default::default() }, &times, &[]);
        let months: Vec<&str> = monthly.iter().map(|&i| &times[i][..16]).collect();
        assert_eq!(months, ["2026-01-31T18:00", "2026-02-28T18:00", "2026-03-31T18:00"]);
        // 2026-03-30 is a Monday: the newest of its week and of the week before.
        let weekly = kept(&Policy { weekly: 2, ..Default::default() }, &times, &[]);
        let weeks: Vec<&str> = weekly.iter().map(|&i| &times[i][..16]).collect();
        assert_eq!(weeks, ["2026-03-29T18:00", "2026-03-31T18:00"]);
        let yearly = kept(&Policy { yearly: 5, ..Default::default() }, &times, &[]);
        assert_eq!(yearly, [n - 1]);
        // Rules add up; each snapshot is kept once.
        let both = kept(&Policy { last: 2, daily: 2, ..Default::default() }, &times, &[]);
        assert_eq!(both, [n - 5, n - 2, n - 1]);
    }

    #[test]
    fn spans_are_calendar_aware() {
        let span = |s: &str| Span::parse(s).unwrap();
        assert_eq!(span("1m").before(at("2026-03-31T12:00:00Z")), at("2026-02-28T12:00:00Z"));
        assert_eq!(span("1y").before(at("2024-02-29T00:00:00Z")), at("2023-02-28T00:00:00Z"));
        assert_eq!(span("2w1d12h").before(at("2026-03-16T12:00:00Z")), at("2026-03-01T00:00:00Z"));
        assert_eq!(span("13m").before(at("2026-01-15T00:00:00Z")), at("2024-12-15T00:00:00Z"));
        for bad in
            ["", "5", "d", "3x", "1.5d", "3000000000000000h", "2000000000000000w", "800000000000000000y"]
        {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::default().is_empty());
    }
}
