//! When a CronJob should have run, when to look at it next, what its Jobs are called, and
//! which finished Jobs its history limits let go; pure, after upstream's `cronjob/utils.go`.

use crate::cronjob::schedule::Schedule;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Requeues land this long after the scheduled time, so clock skew does not wake the
/// controller a moment too early.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed runs than this is taken for a clock problem, and reported.
const TOO_MANY_MISSED: i64 = 100;

/// What a CronJob's schedule is measured from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct History {
    pub(crate) created: Timestamp,
    pub(crate) last_scheduled: Option<Timestamp>,
    pub(crate) starting_deadline_seconds: Option<i64>,
}

/// How many runs were missed since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    None,
    Few,
    Many,
}

/// The outcome of [`most_recent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recent {
    /// The last run, or the creation, or the starting deadline: what runs are counted from.
    pub(crate) earliest: Timestamp,
    /// The latest run due at or before now, if any is due.
    pub(crate) due: Option<Timestamp>,
    pub(crate) missed: Missed,
}

/// A schedule whose runs come less than a second apart (`59 23 31 2 *`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub(crate) struct TooFrequent;

/// The latest run due by `now`, counting from the last run (or the creation), and no
/// further back than the starting deadline when `with_deadline`.
pub(crate) fn most_recent(
    history: History,
    now: Timestamp,
    schedule: &Schedule,
    zone: &TimeZone,
    with_deadline: bool,
) -> Result<Recent, TooFrequent> {
    let mut earliest = history.last_scheduled.unwrap_or(history.created);
    if with_deadline && let Some(deadline) = history.starting_deadline_seconds {
        let limit = now.checked_sub(SignedDuration::from_secs(deadline)).unwrap_or(now);
        earliest = earliest.max(limit);
    }
    let none_due = Recent { earliest, due: None, missed: Missed::None };
    let Some(first) = schedule.next_after(earliest, zone) else { return Ok(none_due) };
    if now < first {
        return Ok(none_due);
    }
    let Some(second) = schedule.next_after(first, zone) else {
        return Ok(Recent { due: Some(first), ..none_due });
    };
    if now < second {
        return Ok(Recent { due: Some(first), ..none_due });
    }
    let between = second
        .duration_since(first)
        .round(k8s_openapi::jiff::Unit::Second)
        .map_or(0, |d| d.as_secs());
    if between < 1 {
        return Err(TooFrequent);
    }
    // An estimate of the runs missed, as upstream: how many intervals fit since the first.
    let elapsed = now.duration_since(first).as_secs();
    let missed_count = elapsed / between + 1;
    let back = SignedDuration::from_secs((missed_count - 2) * between);
    let mut due = None;
    let mut at = schedule.next_after(first.checked_add(back).unwrap_or(first), zone);
    while let Some(run) = at.filter(|run| *run <= now) {
        due = Some(run);
        at = schedule.next_after(run, zone);
    }
    let missed = if missed_count > TOO_MANY_MISSED { Missed::Many } else { Missed::Few };
    Ok(Recent { earliest, due, missed })
}

/// How long to wait before the next run is due (plus a little), if there is a next run.
pub(crate) fn next_delay(
    history: History,
    now: Timestamp,
    schedule: &Schedule,
    zone: &TimeZone,
) -> Option<Duration> {
    let from = match most_recent(history, now, schedule, zone, false) {
        Err(TooFrequent) => now,
        Ok(Recent { due: Some(due), .. }) => due,
        Ok(Recent { due: None, missed: Missed::None, earliest }) => earliest,
        Ok(Recent { due: None, .. }) => now,
    };
    let next = schedule.next_after(from, zone)?;
    let wait = Duration::try_from(next.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: one name per run, so that a run
/// is never created twice.
pub(crate) fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in a time zone, `Z` for UTC as Go prints it.
pub(crate) fn rfc3339_in(at: Timestamp, zone: &TimeZone) -> String {
    let zoned = at.to_zoned(zone.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// RFC 1123 with a numeric zone, in UTC, for the MissSchedule Event.
pub(crate) fn rfc1123z(at: Timestamp) -> String {
    at.to_zoned(TimeZone::UTC).strftime("%a, %d %b %Y %H:%M:%S %z").to_string()
}

/// The oldest of `finished` beyond the newest `limit`, oldest first: by start time (Jobs
/// that never started count as newest), then by name.
pub(crate) fn beyond_limit<'a>(finished: &[&'a Job], limit: i32) -> Vec<&'a Job> {
    let surplus = finished.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    let mut sorted = finished.to_vec();
    sorted.sort_by(|a, b| {
        let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let name = |j: &Job| j.metadata.name.clone().unwrap_or_default();
        match (start(a), start(b)) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => name(a).cmp(&name(b)),
        }
    });
    sorted.truncate(surplus);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn history(created: &str, last: Option<&str>, deadline: Option<i64>) -> History {
        History {
            created: at(created),
            last_scheduled: last.map(at),
            starting_deadline_seconds: deadline,
        }
    }

    fn check(
        schedule: &str,
        history: History,
        now: &str,
        with_deadline: bool,
        due: Option<&str>,
        missed: Missed,
    ) {
        let schedule = Schedule::parse(schedule).unwrap();
        let recent =
            most_recent(history, at(now), &schedule, &TimeZone::UTC, with_deadline).unwrap();
        assert_eq!(
            (recent.due.map(|t| t.to_string()), recent.missed),
            (due.map(String::from), missed),
            "{history:?} at {now}"
        );
    }

    #[test]
    fn the_most_recent_due_run() {
        let created = "2026-01-01T00:00:30Z";
        // Nothing due before the first run.
        check(
            "* * * * *",
            history(created, None, None),
            "2026-01-01T00:00:59Z",
            false,
            None,
            Missed::None,
        );
        check(
            "* * * * *",
            history(created, None, None),
            "2026-01-01T00:01:00Z",
            false,
            Some("2026-01-01T00:01:00Z"),
            Missed::None,
        );
        // Several missed: the latest is due.
        check(
            "* * * * *",
            history(created, None, None),
            "2026-01-01T00:05:10Z",
            false,
            Some("2026-01-01T00:05:00Z"),
            Missed::Few,
        );
        check(
            "* * * * *",
            history(created, Some("2026-01-01T00:04:00Z"), None),
            "2026-01-01T00:05:10Z",
            false,
            Some("2026-01-01T00:05:00Z"),
            Missed::None,
        );
        // Hundreds missed.
        check(
            "* * * * *",
            history(created, None, None),
            "2026-01-01T03:00:10Z",
            false,
            Some("2026-01-01T03:00:00Z"),
            Missed::Many,
        );
        // The starting deadline bounds how far back runs are counted.
        check(
            "* * * * *",
            history(created, None, Some(30)),
            "2026-01-01T03:00:10Z",
            true,
            Some("2026-01-01T03:00:00Z"),
            Missed::None,
        );
        check(
            "0 * * * *",
            history(created, None, Some(30)),
            "2026-01-01T03:00:40Z",
            true,
            None,
            Missed::None,
        );
        check(
            "0 * * * *",
            history(created, None, Some(30)),
            "2026-01-01T03:00:40Z",
            false,
            Some("2026-01-01T03:00:00Z"),
            Missed::Few,
        );
        // Irregular schedules still find the latest run.
        check(
            "30 6-16/4 * * 1-5",
            history("2026-01-05T00:00:00Z", None, None),
            "2026-01-06T15:00:00Z",
            false,
            Some("2026-01-06T14:30:00Z"),
            Missed::Few,
        );
    }

    #[test]
    fn the_next_delay_waits_for_the_next_run() {
        let schedule = Schedule::parse("* * * * *").unwrap();
        let delay = |h: History, now: &str| next_delay(h, at(now), &schedule, &TimeZone::UTC);
        let created = history("2026-01-01T00:00:30Z", None, None);
        assert_eq!(delay(created, "2026-01-01T00:00:40Z"), Some(Duration::from_millis(20_100)));
        let ran = history("2026-01-01T00:00:30Z", Some("2026-01-01T00:01:00Z"), None);
        assert_eq!(delay(ran, "2026-01-01T00:01:02Z"), Some(Duration::from_millis(58_100)));
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(next_delay(created, at("2026-01-01T00:00:40Z"), &never, &TimeZone::UTC), None);
    }

    #[test]
    fn names_and_times() {
        assert_eq!(job_name("hello", at("2026-01-01T00:01:00Z")), "hello-29453761");
        let paris = crate::cronjob::schedule::load_zone("Europe/Paris").unwrap();
        assert_eq!(rfc3339_in(at("2026-01-01T00:01:00Z"), &paris), "2026-01-01T01:01:00+01:00");
        assert_eq!(rfc3339_in(at("2026-01-01T00:01:00Z"), &TimeZone::UTC), "2026-01-01T00:01:00Z");
        assert_eq!(rfc1123z(at("2026-01-01T00:01:00Z")), "Thu, 01 Jan 2026 00:01:00 +0000");
    }

    #[test]
    fn history_limits_remove_the_oldest() {
        let job = |name: &str, start: Option<&str>| -> Job {
            serde_json::from_value(
                json!({"metadata": {"name": name}, "status": {"startTime": start}}),
            )
            .unwrap()
        };
        let jobs = [
            job("c", Some("2026-01-01T00:03:00Z")),
            job("a", Some("2026-01-01T00:01:00Z")),
            job("never", None),
            job("b", Some("2026-01-01T00:01:00Z")),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let names = |limit: i32| -> Vec<String> {
            beyond_limit(&refs, limit).iter().map(|j| j.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(names(3), ["a"]);
        assert_eq!(names(1), ["a", "b", "c"]);
        assert_eq!(names(0), ["a", "b", "c", "never"]);
        assert!(names(5).is_empty());
    }
}
