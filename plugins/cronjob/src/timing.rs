//! When a CronJob runs: its schedule in its time zone, and Kubernetes' missed-schedule arithmetic.

use wasmkube_sdk::chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, TimeZone, Utc};

use crate::cron::{self, Schedule};

/// More missed start times than this draw Kubernetes' `TooManyMissedTimes` warning.
const MANY_MISSED: i64 = 100;

/// A schedule in a time zone.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    schedule: Schedule,
    zone: FixedOffset,
}

/// A `spec.timeZone`: without a tz database in Wasm, only UTC (and its aliases) and the fixed
/// `Etc/GMT±N` zones are known. `Etc/GMT+5` is five hours *behind* UTC, as in the tz database.
pub fn zone(name: Option<&str>) -> Result<FixedOffset, String> {
    let utc = FixedOffset::east_opt(0).ok_or("no UTC offset")?;
    let name = name.unwrap_or_default();
    let bare = name.strip_prefix("Etc/").unwrap_or(name);
    match bare {
        "" | "UTC" | "UCT" | "Universal" | "Zulu" | "GMT" | "GMT0" | "GMT+0" | "GMT-0"
        | "Greenwich" => return Ok(utc),
        _ => {}
    }
    let offset = name
        .strip_prefix("Etc/GMT")
        .filter(|n| n.starts_with(['+', '-']))
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|h| (-14..=12).contains(h))
        .and_then(|h| FixedOffset::west_opt(h * 3600));
    offset.ok_or_else(|| {
        format!("unknown time zone {name} (only UTC and the fixed Etc/GMT±N zones are available)")
    })
}

/// Whether the schedule fired more than [`MANY_MISSED`] times since the earliest time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    /// The last schedule time that was not after `now`, if any since the earliest time.
    pub time: Option<DateTime<Utc>>,
    /// The earliest time considered.
    pub earliest: DateTime<Utc>,
    /// Whether more than [`MANY_MISSED`] start times were missed.
    pub too_many: bool,
}

impl Timing {
    /// Parses `schedule` for `zone`.
    pub fn new(schedule: &str, zone: FixedOffset) -> Result<Timing, String> {
        Ok(Timing {
            schedule: cron::parse(schedule)?,
            zone,
        })
    }

    /// The first schedule time strictly after `after`, if any within five years.
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone).naive_local();
        let next = self.schedule.next(local)?;
        self.zone
            .from_local_datetime(&next)
            .single()
            .map(|t| t.with_timezone(&Utc))
    }

    /// A scheduled time as the `cronjob-scheduled-timestamp` annotation shows it: RFC 3339 in
    /// the CronJob's zone.
    pub fn stamp(&self, time: DateTime<Utc>) -> String {
        time.with_timezone(&self.zone)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Kubernetes' `mostRecentScheduleTime`: the latest schedule time after `earliest` (moved up
    /// to `now - startingDeadlineSeconds` when given) and not after `now`. Like Kubernetes it
    /// counts the missed times approximately, from the interval between the first two.
    pub fn most_recent(
        &self,
        earliest: DateTime<Utc>,
        deadline_seconds: Option<i64>,
        now: DateTime<Utc>,
    ) -> Recent {
        let deadline = deadline_seconds
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| now.checked_sub_signed(d));
        let earliest = match deadline {
            Some(deadline) if deadline > earliest => deadline,
            _ => earliest,
        };
        let none = Recent {
            time: None,
            earliest,
            too_many: false,
        };
        let Some(t1) = self.next(earliest).filter(|t1| *t1 <= now) else {
            return none;
        };
        let Some(t2) = self.next(t1).filter(|t2| *t2 <= now) else {
            return Recent {
                time: Some(t1),
                ..none
            };
        };
        let interval = (t2 - t1).num_seconds().max(1);
        let missed = (now - t1).num_seconds() / interval + 1;
        let mut t = self.next(t1 + TimeDelta::seconds((missed - 2) * interval));
        let mut time = None;
        while let Some(at) = t.filter(|at| *at <= now) {
            time = Some(at);
            t = self.next(at);
        }
        Recent {
            time,
            earliest,
            too_many: missed > MANY_MISSED,
        }
    }

    /// How long until the schedule time after the most recent one (or after `earliest`), plus
    /// Kubernetes' 100 ms `nextScheduleDelta`; `None` when the schedule never fires again.
    pub fn until_next(&self, earliest: DateTime<Utc>, now: DateTime<Utc>) -> Option<TimeDelta> {
        let recent = self.most_recent(earliest, None, now);
        let next = self.next(recent.time.unwrap_or(recent.earliest))?;
        Some(next + TimeDelta::milliseconds(100) - now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(schedule: &str) -> Timing {
        Timing::new(schedule, zone(None).unwrap()).unwrap()
    }

    #[test]
    fn zones_are_utc_or_fixed() {
        for name in [
            None,
            Some("UTC"),
            Some("Etc/UTC"),
            Some("GMT"),
            Some("Etc/GMT-0"),
        ] {
            assert_eq!(zone(name).unwrap().local_minus_utc(), 0, "{name:?}");
        }
        assert_eq!(
            zone(Some("Etc/GMT+5")).unwrap().local_minus_utc(),
            -5 * 3600
        );
        assert_eq!(
            zone(Some("Etc/GMT-14")).unwrap().local_minus_utc(),
            14 * 3600
        );
        for bad in ["Europe/Berlin", "Etc/GMT+13", "Etc/GMT5", "Mars/Olympus"] {
            assert!(zone(Some(bad)).is_err(), "{bad}");
        }
        let plus2 = Timing::new("0 9 * * *", zone(Some("Etc/GMT-2")).unwrap()).unwrap();
        let next = plus2.next(at("2025-01-01T00:00:00Z")).unwrap();
        assert_eq!(next, at("2025-01-01T07:00:00Z"));
        assert_eq!(plus2.stamp(next), "2025-01-01T09:00:00+02:00");
        assert_eq!(utc("0 9 * * *").stamp(next), "2025-01-01T07:00:00Z");
    }

    #[test]
    fn the_most_recent_unmet_time() {
        let t = utc("*/5 * * * *");
        let start = at("2025-01-01T00:00:00Z");
        let recent = t.most_recent(start, None, at("2025-01-01T00:04:59Z"));
        assert_eq!((recent.time, recent.too_many), (None, false));
        let recent = t.most_recent(start, None, at("2025-01-01T00:05:00Z"));
        assert_eq!(recent.time, Some(at("2025-01-01T00:05:00Z")));
        let recent = t.most_recent(start, None, at("2025-01-01T00:17:00Z"));
        assert_eq!(
            (recent.time, recent.too_many),
            (Some(at("2025-01-01T00:15:00Z")), false)
        );
        // 101 missed times.
        let recent = t.most_recent(start, None, at("2025-01-01T08:25:00Z"));
        assert_eq!(
            (recent.time, recent.too_many),
            (Some(at("2025-01-01T08:25:00Z")), true)
        );
        let recent = t.most_recent(start, None, at("2025-01-01T08:20:00Z"));
        assert!(!recent.too_many);
        // A starting deadline moves the earliest time up: nothing within 60 s of 00:17.
        let recent = t.most_recent(start, Some(60), at("2025-01-01T00:17:00Z"));
        assert_eq!(
            (recent.time, recent.earliest),
            (None, at("2025-01-01T00:16:00Z"))
        );
        let recent = t.most_recent(start, Some(180), at("2025-01-01T00:17:00Z"));
        assert_eq!(recent.time, Some(at("2025-01-01T00:15:00Z")));
        // A deadline further back than time goes is no bound (a trap once).
        let recent = t.most_recent(start, Some(i64::MAX), at("2025-01-01T00:17:00Z"));
        assert_eq!(recent.time, Some(at("2025-01-01T00:15:00Z")));
        // Irregular gaps: weekdays at 09:00, five days missed over a weekend.
        let weekdays = utc("0 9 * * 1-5");
        let recent =
            weekdays.most_recent(at("2025-01-02T10:00:00Z"), None, at("2025-01-09T08:00:00Z"));
        assert_eq!(recent.time, Some(at("2025-01-08T09:00:00Z")));
        assert_eq!(
            utc("0 0 31 2 *")
                .most_recent(start, None, at("2030-01-01T00:00:00Z"))
                .time,
            None
        );
    }

    #[test]
    fn waits_until_the_next_time_plus_the_delta() {
        let t = utc("*/5 * * * *");
        let start = at("2025-01-01T00:00:00Z");
        let wait = t.until_next(start, at("2025-01-01T00:03:00Z")).unwrap();
        assert_eq!(wait, TimeDelta::seconds(120) + TimeDelta::milliseconds(100));
        let wait = t.until_next(start, at("2025-01-01T00:17:30Z")).unwrap();
        assert_eq!(wait, TimeDelta::seconds(150) + TimeDelta::milliseconds(100));
        assert_eq!(utc("0 0 31 2 *").until_next(start, start), None);
    }
}
