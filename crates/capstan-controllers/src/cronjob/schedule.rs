//! Cron schedules as upstream reads them (robfig/cron v3's `ParseStandard`: five fields with
//! ranges, steps, lists and month and weekday names, `@hourly`-style descriptors, `@every`),
//! the next run after an instant in a time zone, and time zones from the system's tz
//! database (`/usr/share/zoneinfo`, read by jiff's TZif parser).
//!
//! Runs are found in wall-clock time: a time skipped by a daylight-saving jump never runs,
//! and a time that happens twice runs twice, as with robfig/cron.

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::{AmbiguousOffset, TimeZone};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::path::Path;

/// Where IANA time zone files are looked for, as Go's `time.LoadLocation` does.
const ZONE_DIRECTORIES: &[&str] =
    &["/usr/share/zoneinfo", "/usr/share/lib/zoneinfo", "/usr/lib/locale/TZ"];

/// A schedule that cannot be read; the message is robfig/cron's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ScheduleError(String);

/// A time zone name the system does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0}")]
pub(crate) struct ZoneError(String);

/// One field: which values it allows, and whether it was written as `*` (or `?`) without a
/// step, which matters for days (see [`Fields::day_matches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(&self, value: i8) -> bool {
        (0..64).contains(&value) && self.bits & (1 << value) != 0
    }
}

/// The five fields of a standard schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

impl Fields {
    /// Day of month and day of week: both must match when either is `*`, one suffices
    /// otherwise (`0 0 1,15 * MON` runs on the 1st, the 15th and every Monday).
    fn day_matches(&self, date: Date) -> bool {
        let by_month = self.day_of_month.has(date.day());
        let by_week = self.day_of_week.has(date.weekday().to_sunday_zero_offset());
        if self.day_of_month.star || self.day_of_week.star {
            by_month && by_week
        } else {
            by_month || by_week
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Fields(Fields),
    /// `@every <duration>`: a fixed delay after the previous run, in whole seconds.
    Every(i64),
}

/// A parsed schedule, with the time zone it named itself (`CRON_TZ=…`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    kind: Kind,
    zone: Option<String>,
}

struct Bounds {
    min: i8,
    max: i8,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAYS_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DAYS_OF_WEEK: Bounds =
    Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Schedule {
    pub(crate) fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScheduleError("empty spec string".into()));
        }
        let (zone, rest) = match text.strip_prefix("CRON_TZ=").or_else(|| text.strip_prefix("TZ="))
        {
            Some(prefixed) => {
                let (zone, rest) =
                    prefixed.split_once(char::is_whitespace).unwrap_or((prefixed, ""));
                load_zone(zone)
                    .map_err(|e| ScheduleError(format!("provided bad location {zone}: {e}")))?;
                (Some(zone.to_owned()), rest.trim())
            }
            None => (None, text),
        };
        let kind =
            if rest.starts_with('@') { descriptor(rest)? } else { Kind::Fields(fields(rest)?) };
        Ok(Schedule { kind, zone })
    }

    /// The time zone the schedule itself names (`CRON_TZ=`), if any.
    pub(crate) fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// The first run strictly after `after`, in wall-clock time of `zone`; none within five
    /// years (a schedule such as `0 0 30 2 *` never runs).
    pub(crate) fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let fields = match &self.kind {
            Kind::Every(seconds) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                return whole.checked_add(SignedDuration::from_secs(*seconds)).ok();
            }
            Kind::Fields(fields) => fields,
        };
        let start = after.to_zoned(zone.clone()).datetime().date();
        let last_year = start.year() + 5;
        let mut date = start;
        while date.year() <= last_year {
            if fields.month.has(date.month()) && fields.day_matches(date) {
                for hour in (0..24).filter(|h| fields.hour.has(*h)) {
                    for minute in (0..60).filter(|m| fields.minute.has(*m)) {
                        let wall = date.at(hour, minute, 0, 0);
                        if let Some(run) = instants(zone, wall).into_iter().find(|t| *t > after) {
                            return Some(run);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// The instants a wall-clock time names in a zone: none in a gap, two in a fold.
fn instants(zone: &TimeZone, wall: DateTime) -> Vec<Timestamp> {
    let offsets = match zone.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => vec![offset],
        AmbiguousOffset::Gap { .. } => Vec::new(),
        AmbiguousOffset::Fold { before, after } => vec![before, after],
    };
    offsets.into_iter().filter_map(|offset| offset.to_timestamp(wall).ok()).collect()
}

fn descriptor(text: &str) -> Result<Kind, ScheduleError> {
    let standard = match text {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            let Some(duration) = text.strip_prefix("@every ") else {
                return Err(ScheduleError(format!("unrecognized descriptor: {text}")));
            };
            let seconds = go_duration_seconds(duration).ok_or_else(|| {
                ScheduleError(format!(
                    "failed to parse duration {text}: time: invalid duration \"{duration}\""
                ))
            })?;
            // robfig/cron runs `@every` at least a second apart.
            return Ok(Kind::Every(seconds.max(1)));
        }
    };
    fields(standard).map(Kind::Fields)
}

/// A Go duration (`1h30m`, `90s`, `1.5h`) in whole seconds.
fn go_duration_seconds(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut nanos: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let units: [(&str, f64); 7] = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ];
        let (unit, scale) = units.iter().find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        nanos += number * scale;
    }
    Some((nanos / 1e9) as i64)
}

fn fields(text: &str) -> Result<Fields, ScheduleError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [minute, hour, day_of_month, month, day_of_week] = parts.as_slice() else {
        let message =
            format!("expected exactly 5 fields, found {}: [{}]", parts.len(), parts.join(" "));
        return Err(ScheduleError(message));
    };
    Ok(Fields {
        minute: field(minute, &MINUTES)?,
        hour: field(hour, &HOURS)?,
        day_of_month: field(day_of_month, &DAYS_OF_MONTH)?,
        month: field(month, &MONTHS)?,
        day_of_week: field(day_of_week, &DAYS_OF_WEEK)?,
    })
}

fn field(text: &str, bounds: &Bounds) -> Result<Field, ScheduleError> {
    let mut result = Field { bits: 0, star: false };
    for part in text.split(',') {
        let one = range(part, bounds)?;
        result.bits |= one.bits;
        result.star |= one.star;
    }
    Ok(result)
}

/// `*`, `?`, `n`, `n-m`, each with an optional `/step`; `n/step` runs from n to the maximum.
fn range(text: &str, bounds: &Bounds) -> Result<Field, ScheduleError> {
    let range_and_step: Vec<&str> = text.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star) = if matches!(low_and_high[0], "*" | "?") {
        (bounds.min, bounds.max, true)
    } else {
        let start = value(low_and_high[0], bounds)?;
        let end = match low_and_high.as_slice() {
            [_] => start,
            [_, high] => value(high, bounds)?,
            _ => return Err(ScheduleError(format!("too many hyphens: {text}"))),
        };
        (start, end, false)
    };
    let step = match range_and_step.as_slice() {
        [_] => 1,
        [_, step] => {
            let step = number(step)?;
            if single {
                end = bounds.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(ScheduleError(format!("too many slashes: {text}"))),
    };
    if start < bounds.min {
        return Err(ScheduleError(format!(
            "beginning of range ({start}) below minimum ({}): {text}",
            bounds.min
        )));
    }
    if end > bounds.max {
        return Err(ScheduleError(format!(
            "end of range ({end}) above maximum ({}): {text}",
            bounds.max
        )));
    }
    if start > end {
        return Err(ScheduleError(format!(
            "beginning of range ({start}) beyond end of range ({end}): {text}"
        )));
    }
    if step == 0 {
        return Err(ScheduleError(format!("step of range should be a positive number: {text}")));
    }
    let bits = (start..=end).step_by(step as usize).fold(0_u64, |bits, value| bits | (1 << value));
    Ok(Field { bits, star })
}

/// A number or, for months and weekdays, a name.
fn value(text: &str, bounds: &Bounds) -> Result<i8, ScheduleError> {
    let lower = text.to_ascii_lowercase();
    match bounds.names.iter().position(|name| *name == lower) {
        Some(position) => Ok(position as i8 + bounds.min),
        None => {
            let parsed = number(text)?;
            i8::try_from(parsed).map_err(|_| {
                ScheduleError(format!(
                    "end of range ({parsed}) above maximum ({}): {text}",
                    bounds.max
                ))
            })
        }
    }
}

fn number(text: &str) -> Result<u32, ScheduleError> {
    let parsed: i64 = text.parse().map_err(|_| {
        ScheduleError(format!(
            "failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": invalid syntax"
        ))
    })?;
    if parsed < 0 {
        return Err(ScheduleError(format!("negative number ({parsed}) not allowed: {text}")));
    }
    u32::try_from(parsed)
        .map_err(|_| ScheduleError(format!("failed to parse int from {text}: value out of range")))
}

/// An IANA time zone from the system's database; `UTC` (and the empty name) need none.
pub(crate) fn load_zone(name: &str) -> Result<TimeZone, ZoneError> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    let unknown = || ZoneError(name.to_owned());
    // Names are relative paths below the database: nothing may climb out of it.
    let safe = !name.starts_with('/')
        && !name.contains('\\')
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
    if !safe {
        return Err(unknown());
    }
    for directory in ZONE_DIRECTORIES {
        if let Ok(bytes) = std::fs::read(Path::new(directory).join(name)) {
            return TimeZone::tzif(name, &bytes).map_err(|_| unknown());
        }
    }
    Err(unknown())
}

/// The controller process's own time zone, which a CronJob without `spec.timeZone` follows:
/// `$TZ` if set, else `/etc/localtime`, else UTC.
pub(crate) fn local_zone() -> TimeZone {
    if let Ok(name) = std::env::var("TZ") {
        return load_zone(name.trim_start_matches(':')).unwrap_or(TimeZone::UTC);
    }
    std::fs::read("/etc/localtime")
        .ok()
        .and_then(|bytes| TimeZone::tzif("Local", &bytes).ok())
        .unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> TimeZone {
        load_zone(name).unwrap()
    }

    /// The runs after `after` (RFC 3339), as RFC 3339 instants in UTC.
    fn check(schedule: &str, zone_name: &str, after: &str, expected: &[&str]) {
        let schedule = Schedule::parse(schedule).unwrap();
        let zone = zone(zone_name);
        let mut at: Timestamp = after.parse().unwrap();
        let mut runs = Vec::new();
        for _ in 0..expected.len() {
            let Some(next) = schedule.next_after(at, &zone) else { break };
            runs.push(next.to_string());
            at = next;
        }
        assert_eq!(runs, expected, "{schedule:?} in {zone_name} after {after}");
    }

    #[test]
    fn next_runs_in_utc() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "* * * * *",
                "2026-01-01T00:00:00Z",
                &["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
            ),
            ("* * * * *", "2026-01-01T00:00:30Z", &["2026-01-01T00:01:00Z"]),
            (
                "*/15 * * * *",
                "2026-01-01T00:14:59Z",
                &["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"],
            ),
            (
                "5/20 * * * *",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-01T00:05:00Z",
                    "2026-01-01T00:25:00Z",
                    "2026-01-01T00:45:00Z",
                    "2026-01-01T01:05:00Z",
                ],
            ),
            (
                "0 9-17/4 * * *",
                "2026-01-01T10:00:00Z",
                &["2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z", "2026-01-02T09:00:00Z"],
            ),
            (
                "30 2 1,15 jan *",
                "2026-01-01T03:00:00Z",
                &["2026-01-15T02:30:00Z", "2027-01-01T02:30:00Z"],
            ),
            // 2026-01-01 is a Thursday.
            (
                "0 0 * * MON-FRI",
                "2026-01-02T00:00:00Z",
                &["2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z"],
            ),
            // Day of month or day of week when neither is `*`.
            (
                "0 0 13 * fri",
                "2026-02-01T00:00:00Z",
                &["2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z", "2026-02-20T00:00:00Z"],
            ),
            ("0 0 29 2 *", "2026-01-01T00:00:00Z", &["2028-02-29T00:00:00Z"]),
            ("@hourly", "2026-01-01T00:00:00Z", &["2026-01-01T01:00:00Z"]),
            ("@daily", "2026-01-01T00:00:00Z", &["2026-01-02T00:00:00Z"]),
            ("@weekly", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z"]),
            ("@monthly", "2026-01-01T00:00:00Z", &["2026-02-01T00:00:00Z"]),
            ("@yearly", "2026-01-01T00:00:00Z", &["2027-01-01T00:00:00Z"]),
            (
                "@every 90s",
                "2026-01-01T00:00:00.5Z",
                &["2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"],
            ),
            ("0 0 30 2 *", "2026-01-01T00:00:00Z", &[]),
        ];
        for (schedule, after, expected) in cases {
            if expected.is_empty() {
                let parsed = Schedule::parse(schedule).unwrap();
                assert_eq!(parsed.next_after(after.parse().unwrap(), &TimeZone::UTC), None);
            } else {
                check(schedule, "UTC", after, expected);
            }
        }
    }

    #[test]
    fn next_runs_in_time_zones_and_across_daylight_saving() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        check(
            "0 9 * * *",
            "Europe/Paris",
            "2026-03-28T12:00:00Z",
            &["2026-03-29T07:00:00Z", "2026-03-30T07:00:00Z"],
        );
        // 02:30 does not exist in New York on 2026-03-08: that run is skipped.
        check("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", &["2026-03-09T06:30:00Z"]);
        // 01:30 happens twice on 2026-11-01: both run.
        check(
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            &["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "2026-11-02T06:30:00Z"],
        );
        check("0 0 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", &["2026-01-01T18:30:00Z"]);
        let named = Schedule::parse("CRON_TZ=Asia/Tokyo 0 0 * * *").unwrap();
        assert_eq!(named.zone(), Some("Asia/Tokyo"));
    }

    #[test]
    fn schedules_are_refused_with_robfig_messages() {
        let cases = [
            ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
            ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
            ("@often", "unrecognized descriptor: @often"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("*/2/3 * * * *", "too many slashes: */2/3"),
            ("@every x", "failed to parse duration @every x: time: invalid duration \"x\""),
            ("", "empty spec string"),
        ];
        for (schedule, message) in cases {
            assert_eq!(
                Schedule::parse(schedule),
                Err(ScheduleError(message.to_owned())),
                "{schedule:?}"
            );
        }
    }

    #[test]
    fn zones_come_from_the_system_database() {
        assert!(load_zone("Europe/Paris").is_ok());
        assert!(load_zone("UTC").is_ok());
        assert!(load_zone("").is_ok());
        for bad in
            ["Mars/Base", "../etc/passwd", "/etc/localtime", "Europe/../Europe/Paris", "Europe"]
        {
            assert_eq!(load_zone(bad).err(), Some(ZoneError(bad.to_owned())), "{bad}");
        }
    }
}
