//! When a trigger fires: cron expressions in a time zone, and fixed intervals.
//!
//! Cron expressions are parsed and evaluated by `croner` (5 fields, or 6 with seconds first;
//! `@hourly`-style nicknames), in an IANA time zone from `chrono-tz`. Around a daylight-saving
//! change a local time that is skipped fires at the first valid time after the gap, and a local
//! time that happens twice fires once, at its first occurrence.
//!
//! Intervals fire at whole multiples of the interval since the Unix epoch, as BullMQ's `every`
//! and Temporal's interval specs do: `1h` fires on the hour, `15m` at :00, :15, :30 and :45,
//! whenever the trigger was created, so fire times never drift across restarts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::job::EpochMs;

/// Shortest interval a trigger may have.
pub const MIN_INTERVAL_MS: i64 = 1_000;
/// Longest interval (and longest lifetime) a trigger may have.
pub const MAX_INTERVAL_MS: i64 = 366 * DAY_MS;

/// Searches a cron schedule may make to get past one repeated local hour (one a second).
const MAX_REPEATED_SEARCHES: usize = 4_000;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// A schedule as defined and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    Cron {
        expression: String,
        /// IANA name, e.g. `Europe/Berlin`; `UTC` by default.
        time_zone: String,
    },
    Interval {
        every_ms: i64,
    },
}

/// Why a schedule definition was refused; the message says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression '{expression}': {reason}")]
    InvalidCron { expression: String, reason: String },
    #[error("unknown time zone '{0}': use an IANA name such as UTC or Europe/Berlin")]
    UnknownTimeZone(String),
    #[error("invalid {field} '{text}': {reason}")]
    InvalidDuration {
        field: &'static str,
        text: String,
        reason: String,
    },
    #[error("cron expression '{0}' never fires")]
    NeverFires(String),
}

impl Schedule {
    /// A cron schedule, checked: 5 fields, or 6 with seconds first, in `time_zone` (UTC if
    /// `None`).
    pub fn cron(expression: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let expression = expression.trim().to_string();
        let time_zone = match time_zone.map(str::trim) {
            None | Some("") => "UTC".to_string(),
            Some(zone) => zone.to_string(),
        };
        let schedule = Schedule::Cron {
            expression,
            time_zone,
        };
        schedule.compile()?;
        Ok(schedule)
    }

    /// An interval schedule from text such as `30s`, `15m`, `1h30m`, `2d` or `1w`.
    pub fn interval(text: &str) -> Result<Schedule, ScheduleError> {
        let every_ms = parse_duration("interval", text)?;
        if every_ms < MIN_INTERVAL_MS {
            return Err(ScheduleError::InvalidDuration {
                field: "interval",
                text: text.to_string(),
                reason: "an interval must be at least 1s".into(),
            });
        }
        Ok(Schedule::Interval { every_ms })
    }

    /// The schedule ready to compute fire times.
    pub fn compile(&self) -> Result<CompiledSchedule, ScheduleError> {
        match self {
            Schedule::Interval { every_ms } => Ok(CompiledSchedule::Interval(*every_ms)),
            Schedule::Cron {
                expression,
                time_zone,
            } => {
                let zone = Tz::from_str(time_zone)
                    .map_err(|_| ScheduleError::UnknownTimeZone(time_zone.clone()))?;
                let invalid = |reason: String| ScheduleError::InvalidCron {
                    expression: expression.clone(),
                    reason,
                };
                let fields = expression.split_whitespace().count();
                if !expression.starts_with('@') && !(5..=6).contains(&fields) {
                    return Err(invalid(format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                         with seconds first, got {fields}"
                    )));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(expression)
                    .map_err(|error| invalid(error.to_string()))?;
                Ok(CompiledSchedule::Cron(Box::new(cron), zone))
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron {
                expression,
                time_zone,
            } => write!(f, "cron '{expression}' ({time_zone})"),
            Schedule::Interval { every_ms } => write!(f, "every {}", format_duration(*every_ms)),
        }
    }
}

/// A schedule that can compute its fire times.
#[derive(Clone, Debug)]
pub enum CompiledSchedule {
    Cron(Box<Cron>, Tz),
    Interval(i64),
}

impl CompiledSchedule {
    /// The first fire time strictly after `after`, or `None` if there is none.
    pub fn next_after(&self, after: EpochMs) -> Option<EpochMs> {
        match self {
            CompiledSchedule::Interval(every) => {
                Some((after.div_euclid(*every) + 1).checked_mul(*every)?)
            }
            CompiledSchedule::Cron(cron, zone) => {
                // Cron has whole seconds: searching strictly after the whole second that
                // contains `after` finds the first fire strictly after `after` itself.
                let mut from = after.div_euclid(1000);
                // In a repeated local hour the search answers the first of the two instants,
                // which can lie before `after`: search on from there until the answer is
                // later (the repeated times fire once, at their first occurrence).
                for _ in 0..MAX_REPEATED_SEARCHES {
                    let whole_second: DateTime<Utc> = DateTime::from_timestamp(from, 0)?;
                    let local = zone.from_utc_datetime(&whole_second.naive_utc());
                    let local_next = cron.find_next_occurrence(&local, false).ok()?;
                    let next = local_next.timestamp_millis();
                    if next > after {
                        return Some(next);
                    }
                    // Go on from the wall-clock time after the answer, in its later offset.
                    let later_offset = zone
                        .from_local_datetime(&local_next.naive_local())
                        .latest()?;
                    from = from
                        .max(later_offset.timestamp())
                        .max(local_next.timestamp());
                }
                None
            }
        }
    }
}

/// Parses a duration such as `30s`, `15m`, `1h30m`, `2d` or `1w` into milliseconds.
pub fn parse_duration(field: &'static str, text: &str) -> Result<i64, ScheduleError> {
    let invalid = |reason: &str| ScheduleError::InvalidDuration {
        field,
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty; write e.g. 30s, 15m, 1h30m, 2d or 1w"));
    }
    if trimmed.starts_with('-') {
        return Err(invalid("it must be positive"));
    }
    let mut total: i64 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid(
                "expected a number followed by a unit: w, d, h, m or s (e.g. 1h30m)",
            ));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| invalid("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "w" => WEEK_MS,
            "d" => DAY_MS,
            "h" => HOUR_MS,
            "m" => MINUTE_MS,
            "s" => SECOND_MS,
            "" => {
                return Err(invalid(
                    "a unit is missing after the number: w, d, h, m or s",
                ));
            }
            other => {
                return Err(invalid(&format!(
                    "unknown unit '{other}': use w, d, h, m or s"
                )));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .filter(|ms| *ms <= MAX_INTERVAL_MS)
            .ok_or_else(|| invalid("it is longer than 366d"))?;
    }
    if total == 0 {
        return Err(invalid("it must be positive"));
    }
    Ok(total)
}

/// Writes milliseconds the way [`parse_duration`] reads them, e.g. `1h30m`.
pub fn format_duration(mut ms: i64) -> String {
    let mut text = String::new();
    for (unit, name) in [
        (WEEK_MS, "w"),
        (DAY_MS, "d"),
        (HOUR_MS, "h"),
        (MINUTE_MS, "m"),
        (SECOND_MS, "s"),
    ] {
        if ms >= unit {
            text.push_str(&format!("{}{name}", ms / unit));
            ms %= unit;
        }
    }
    if ms > 0 || text.is_empty() {
        text.push_str(&format!("{ms}ms"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> EpochMs {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("valid time")
            .timestamp_millis()
    }

    fn next(schedule: &Schedule, after: &str) -> String {
        let ms = schedule
            .compile()
            .expect("compiles")
            .next_after(at(after))
            .expect("fires");
        DateTime::from_timestamp_millis(ms)
            .expect("in range")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[test]
    fn durations_read_every_unit_and_combinations() {
        assert_eq!(parse_duration("interval", "30s"), Ok(30_000));
        assert_eq!(parse_duration("interval", "15m"), Ok(900_000));
        assert_eq!(parse_duration("interval", "1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("interval", "2d"), Ok(172_800_000));
        assert_eq!(parse_duration("interval", "1w"), Ok(604_800_000));
        assert_eq!(format_duration(5_400_000), "1h30m");
        assert_eq!(format_duration(604_800_000), "1w");
    }

    #[test]
    fn zero_negative_and_malformed_intervals_are_refused_with_reasons() {
        let message = |text: &str| Schedule::interval(text).unwrap_err().to_string();
        assert_eq!(message("0s"), "invalid interval '0s': it must be positive");
        assert_eq!(
            message("-5m"),
            "invalid interval '-5m': it must be positive"
        );
        assert!(
            message("10").contains("a unit is missing"),
            "{}",
            message("10")
        );
        assert!(
            message("5x").contains("unknown unit 'x'"),
            "{}",
            message("5x")
        );
        assert!(message("500ms").contains("unknown unit 'ms'"));
        assert!(message("400d").contains("longer than 366d"));
    }

    #[test]
    fn intervals_fire_on_multiples_of_the_interval_since_the_epoch() {
        let hourly = Schedule::interval("1h").unwrap();
        assert_eq!(
            next(&hourly, "2026-03-01T10:17:03Z"),
            "2026-03-01T11:00:00.000Z"
        );
        assert_eq!(
            next(&hourly, "2026-03-01T11:00:00Z"),
            "2026-03-01T12:00:00.000Z"
        );
        let every_90m = Schedule::interval("1h30m").unwrap();
        assert_eq!(
            next(&every_90m, "2026-03-01T00:10:00Z"),
            "2026-03-01T01:30:00.000Z"
        );
    }

    #[test]
    fn cron_with_seconds_fires_on_the_named_seconds() {
        let every_15s = Schedule::cron("*/15 * * * * *", None).unwrap();
        assert_eq!(
            next(&every_15s, "2026-03-01T10:00:07.250Z"),
            "2026-03-01T10:00:15.000Z"
        );
        assert_eq!(
            next(&every_15s, "2026-03-01T10:00:15Z"),
            "2026-03-01T10:00:30.000Z"
        );
        let five_fields = Schedule::cron("30 9 * * 1", None).unwrap();
        // 2026-03-02 is a Monday.
        assert_eq!(
            next(&five_fields, "2026-03-01T12:00:00Z"),
            "2026-03-02T09:30:00.000Z"
        );
    }

    #[test]
    fn cron_in_a_time_zone_keeps_local_time_across_a_dst_change() {
        // Berlin moves from UTC+1 to UTC+2 on 2026-03-29 at 02:00 local time.
        let daily_nine = Schedule::cron("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&daily_nine, "2026-03-28T12:00:00Z"),
            "2026-03-29T07:00:00.000Z"
        );
        assert_eq!(
            next(&daily_nine, "2026-03-27T12:00:00Z"),
            "2026-03-28T08:00:00.000Z"
        );
    }

    #[test]
    fn cron_at_a_skipped_local_time_fires_right_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29: the clock jumps from 02:00 to 03:00.
        let at_half_past_two = Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&at_half_past_two, "2026-03-28T12:00:00Z"),
            "2026-03-29T01:00:00.000Z"
        );
    }

    #[test]
    fn cron_at_a_repeated_local_time_fires_once() {
        // 02:30 happens twice in Berlin on 2026-10-25 (at 00:30 and 01:30 UTC).
        let at_half_past_two = Schedule::cron("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let first = next(&at_half_past_two, "2026-10-24T12:00:00Z");
        assert_eq!(first, "2026-10-25T00:30:00.000Z");
        assert_eq!(next(&at_half_past_two, &first), "2026-10-26T01:30:00.000Z");
    }

    #[test]
    fn the_next_fire_inside_a_repeated_hour_is_never_in_the_past() {
        // 01:10Z is 02:10 in the second (CET) pass of Berlin's repeated hour on 2026-10-25;
        // 02:15, 02:30 and 02:45 local already fired in the first pass.
        let quarterly = Schedule::cron("*/15 * * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&quarterly, "2026-10-25T01:10:00Z"),
            "2026-10-25T02:00:00.000Z"
        );
        let every_second = Schedule::cron("* * * * * *", Some("Europe/Berlin")).unwrap();
        let after = "2026-10-25T01:10:00Z";
        assert!(epoch(&next(&every_second, after)) > epoch(after));
    }

    fn epoch(text: &str) -> EpochMs {
        at(text)
    }

    #[test]
    fn bad_cron_definitions_are_refused_with_reasons() {
        let message =
            |expr: &str, zone: Option<&str>| Schedule::cron(expr, zone).unwrap_err().to_string();
        assert!(
            message("* * * *", None).contains("expected 5 fields"),
            "{}",
            message("* * * *", None)
        );
        assert!(message("0 0 0 * * * *", None).contains("got 7"));
        assert!(message("61 * * * *", None).starts_with("invalid cron expression '61 * * * *'"));
        assert_eq!(
            message("0 9 * * *", Some("Mars/Olympus")),
            "unknown time zone 'Mars/Olympus': use an IANA name such as UTC or Europe/Berlin"
        );
    }
}
