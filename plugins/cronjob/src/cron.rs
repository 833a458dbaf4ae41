//! Standard 5-field cron schedules, parsed and evaluated as Kubernetes' (robfig/cron) parser does.

use wasmkube_sdk::chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

/// Set in a day field's bits when it was `*` or `?` (a step of 1 included); robfig/cron ANDs
/// day-of-month and day-of-week when either is starred, and ORs them otherwise.
const STAR: u64 = 1 << 63;
/// How far `next` looks ahead, as robfig/cron: five years.
const HORIZON_DAYS: i64 = 5 * 366;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A field's bounds and value names.
struct Bounds {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name (1 for months, 0 for days).
    first: u32,
}

const MINUTE: Bounds = Bounds {
    what: "minute",
    min: 0,
    max: 59,
    names: &[],
    first: 0,
};
const HOUR: Bounds = Bounds {
    what: "hour",
    min: 0,
    max: 23,
    names: &[],
    first: 0,
};
const DOM: Bounds = Bounds {
    what: "day of month",
    min: 1,
    max: 31,
    names: &[],
    first: 0,
};
const MONTH: Bounds = Bounds {
    what: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    first: 1,
};
const DOW: Bounds = Bounds {
    what: "day of week",
    min: 0,
    max: 6,
    names: &DAYS,
    first: 0,
};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

/// Parses a schedule: five fields (`*`, `?`, numbers, `JAN`–`DEC`, `SUN`–`SAT`, ranges `a-b`,
/// steps `*/n`, `a-b/n` and `a/n`, comma lists) or one of `@yearly`, `@annually`, `@monthly`,
/// `@weekly`, `@daily`, `@midnight`, `@hourly`.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    let expanded = match spec.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => {
            return Err(format!("unrecognized descriptor: {spec}"));
        }
        _ => spec,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            fields.len()
        ));
    };
    Ok(Schedule {
        minute: field(minute, &MINUTE)?,
        hour: field(hour, &HOUR)?,
        dom: field(dom, &DOM)?,
        month: field(month, &MONTH)?,
        dow: field(dow, &DOW)?,
    })
}

fn field(text: &str, bounds: &Bounds) -> Result<u64, String> {
    text.split(',')
        .map(|part| range(part, bounds))
        .try_fold(0, |bits, r| Ok(bits | r?))
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let (span, step) = match expr.split('/').collect::<Vec<_>>()[..] {
        [span] => (span, None),
        [span, step] => (span, Some(number(step, b)?)),
        _ => return Err(format!("too many slashes: {expr}")),
    };
    let (mut start, mut end, mut star) = match span.split('-').collect::<Vec<_>>()[..] {
        ["*" | "?"] => (b.min, b.max, true),
        [single] => {
            let v = value(single, b)?;
            (v, v, false)
        }
        [low, high] => (value(low, b)?, value(high, b)?, false),
        _ => return Err(format!("too many hyphens: {expr}")),
    };
    if let Some(step) = step {
        if !span.contains('-') {
            end = b.max; // `a/n` means `a-max/n`
        }
        if step > 1 {
            star = false;
        }
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    let step = step.unwrap_or(1);
    let mut bits = if star { STAR } else { 0 };
    while start <= end {
        bits |= 1 << start;
        start += step;
    }
    Ok(bits)
}

fn value(text: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(b.first + u32::try_from(i).unwrap_or(0)),
        None => number(text, b),
    }
}

fn number(text: &str, b: &Bounds) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("failed to parse {} from {text:?}", b.what))
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

impl Schedule {
    /// Whether the schedule runs on `date`: month, then day-of-month and day-of-week (ANDed
    /// when either was `*`, ORed otherwise).
    fn runs_on(&self, date: NaiveDate) -> bool {
        if !has(self.month, date.month()) {
            return false;
        }
        let dom = has(self.dom, date.day());
        let dow = has(self.dow, date.weekday().num_days_from_sunday());
        if (self.dom | self.dow) & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time the schedule fires strictly after `after` (wall-clock time), within five
    /// years; `None` when it never does (e.g. `0 0 31 2 *`).
    pub fn next(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = after.with_second(0)?.with_nanosecond(0)? + TimeDelta::minutes(1);
        let mut date = start.date();
        let (mut hour, mut minute) = (start.hour(), start.minute());
        let last = start.date() + TimeDelta::days(HORIZON_DAYS);
        while date <= last {
            if self.runs_on(date) {
                let hours = (hour..24).filter(|h| has(self.hour, *h));
                for h in hours {
                    let from = if h == hour { minute } else { 0 };
                    if let Some(m) = (from..60).find(|m| has(self.minute, *m)) {
                        return date.and_hms_opt(h, m, 0);
                    }
                }
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The next firing of `spec` after `after` (`%Y-%m-%dT%H:%M:%S`), formatted the same way.
    fn next(spec: &str, after: &str) -> Option<String> {
        let after = NaiveDateTime::parse_from_str(after, "%Y-%m-%dT%H:%M:%S").unwrap();
        let next = parse(spec).unwrap().next(after)?;
        Some(next.format("%Y-%m-%dT%H:%M:%S").to_string())
    }

    fn fires(spec: &str, after: &str, want: &str) {
        assert_eq!(
            next(spec, after).as_deref(),
            Some(want),
            "{spec} after {after}"
        );
    }

    #[test]
    fn rejects_malformed_schedules() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 0 *",
            "* * * 13 *",
            "* * * * 7",
            "5-1 * * * *",
            "*/0 * * * *",
            "1-2-3 * * * *",
            "*/2/3 * * * *",
            "a * * * *",
            "-1 * * * *",
            "* * * FOO *",
            "@every 5m",
            "@reboot",
            "1,,2 * * * *",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse("* * * * *").is_ok());
        assert!(parse("  0   0 * * *  ").is_ok());
    }

    #[test]
    fn steps_ranges_and_lists() {
        fires("* * * * *", "2025-01-01T00:00:00", "2025-01-01T00:01:00");
        fires("* * * * *", "2025-01-01T00:00:30", "2025-01-01T00:01:00");
        fires("? ? ? ? ?", "2025-01-01T00:00:00", "2025-01-01T00:01:00");
        fires("*/15 * * * *", "2025-01-01T00:14:59", "2025-01-01T00:15:00");
        fires("*/15 * * * *", "2025-01-01T00:45:00", "2025-01-01T01:00:00");
        fires("5/20 * * * *", "2025-01-01T00:25:00", "2025-01-01T00:45:00");
        fires("5/20 * * * *", "2025-01-01T00:45:00", "2025-01-01T01:05:00");
        fires(
            "10-20/5 3 * * *",
            "2025-01-01T03:15:00",
            "2025-01-01T03:20:00",
        );
        fires(
            "10-20/5 3 * * *",
            "2025-01-01T03:20:00",
            "2025-01-02T03:10:00",
        );
        fires(
            "0,30 1,13 * * *",
            "2025-01-01T01:30:00",
            "2025-01-01T13:00:00",
        );
        fires(
            "59 23 31 12 *",
            "2025-01-01T00:00:00",
            "2025-12-31T23:59:00",
        );
        fires(
            "0 0 1 jan,Jul *",
            "2025-01-01T00:00:00",
            "2025-07-01T00:00:00",
        );
        fires("0 0 * DEC *", "2025-01-01T00:00:00", "2025-12-01T00:00:00");
    }

    #[test]
    fn weekdays_and_the_day_fields_or_and_and() {
        // 2025-01-04 is a Saturday.
        fires(
            "0 9-17/4 * * MON-FRI",
            "2025-01-04T00:00:00",
            "2025-01-06T09:00:00",
        );
        fires(
            "0 9-17/4 * * MON-FRI",
            "2025-01-06T13:00:00",
            "2025-01-06T17:00:00",
        );
        fires(
            "0 9-17/4 * * mon-fri",
            "2025-01-06T17:00:00",
            "2025-01-07T09:00:00",
        );
        fires("0 0 * * 0", "2025-01-01T00:00:00", "2025-01-05T00:00:00");
        fires(
            "0 0 * * sat,SUN",
            "2025-01-01T00:00:00",
            "2025-01-04T00:00:00",
        );
        // Both restricted: either matches (the 13th, or any Friday).
        fires("0 0 13 * FRI", "2025-01-01T00:00:00", "2025-01-03T00:00:00");
        fires("0 0 13 * FRI", "2025-01-10T00:00:00", "2025-01-13T00:00:00");
        // A step over days is a restriction too; `*/1` and `*` are not.
        fires(
            "0 0 */2 * MON",
            "2025-01-03T00:00:00",
            "2025-01-05T00:00:00",
        );
        fires(
            "0 0 */2 * MON",
            "2025-01-05T00:00:00",
            "2025-01-06T00:00:00",
        );
        fires(
            "0 0 */1 * MON",
            "2025-01-01T00:00:00",
            "2025-01-06T00:00:00",
        );
        fires("0 0 13 * *", "2025-01-01T00:00:00", "2025-01-13T00:00:00");
        fires("0 0 13 * ?", "2025-01-14T00:00:00", "2025-02-13T00:00:00");
    }

    #[test]
    fn macros() {
        let at = "2025-01-01T00:00:00";
        fires("@yearly", at, "2026-01-01T00:00:00");
        fires("@annually", at, "2026-01-01T00:00:00");
        fires("@monthly", at, "2025-02-01T00:00:00");
        fires("@weekly", at, "2025-01-05T00:00:00");
        fires("@daily", at, "2025-01-02T00:00:00");
        fires("@midnight", at, "2025-01-02T00:00:00");
        fires("@HOURLY", at, "2025-01-01T01:00:00");
    }

    #[test]
    fn impossible_dates_never_fire() {
        fires("0 0 29 2 *", "2025-01-01T00:00:00", "2028-02-29T00:00:00");
        assert_eq!(next("0 0 31 2 *", "2025-01-01T00:00:00"), None);
        assert_eq!(next("0 0 30 2 *", "2025-01-01T00:00:00"), None);
        assert_eq!(next("0 0 31 4,6,9,11 *", "2025-01-01T00:00:00"), None);
        fires("0 0 31 2,3 *", "2025-01-01T00:00:00", "2025-03-31T00:00:00");
    }
}
