//! CronJob schedules as robfig/cron's `ParseStandard` reads them (five fields or a
//! descriptor such as `@hourly`), with its error messages, and time zone names.

/// One field of a schedule: its bounds and, for months and weekdays, its names.
struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] =
    &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field { min: 0, max: 59, names: &[] },
    Field { min: 0, max: 23, names: &[] },
    Field { min: 1, max: 31, names: &[] },
    Field { min: 1, max: 12, names: MONTHS },
    Field { min: 0, max: 6, names: WEEKDAYS },
];

const DESCRIPTORS: &[&str] =
    &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

/// Checks a schedule; the error is robfig/cron's message.
pub(crate) fn parse(schedule: &str) -> Result<(), String> {
    if schedule.starts_with('@') {
        return descriptor(schedule);
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (text, field) in fields.iter().zip(&FIELDS) {
        for range in text.split(',') {
            self::range(range, field)?;
        }
    }
    Ok(())
}

fn descriptor(schedule: &str) -> Result<(), String> {
    if DESCRIPTORS.contains(&schedule) {
        return Ok(());
    }
    if let Some(duration) = schedule.strip_prefix("@every ") {
        return go_duration(duration).then_some(()).ok_or_else(|| {
            format!("failed to parse duration {schedule}: time: invalid duration \"{duration}\"")
        });
    }
    Err(format!("unrecognized descriptor: {schedule}"))
}

/// Whether `text` is a Go duration such as `1h30m` or `90s`.
fn go_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(*u));
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}

/// `*`, `?`, `n`, `n-m`, each with an optional `/step`.
fn range(text: &str, field: &Field) -> Result<(), String> {
    let parts: Vec<&str> = text.split('/').collect();
    let bounds: Vec<&str> = parts[0].split('-').collect();
    let (start, end) = if bounds[0] == "*" || bounds[0] == "?" {
        (field.min, field.max)
    } else {
        let start = value(bounds[0], field)?;
        let end = match bounds.as_slice() {
            [_] => start,
            [_, end] => value(end, field)?,
            _ => return Err(format!("too many hyphens: {text}")),
        };
        (start, end)
    };
    match parts.as_slice() {
        [_] => {}
        [_, step] => {
            let step = number(step)?;
            if step == 0 {
                return Err(format!("step of range should be a positive number: {text}"));
            }
        }
        _ => return Err(format!("too many slashes: {text}")),
    }
    if start < field.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {text}", field.min));
    }
    if end > field.max {
        return Err(format!("end of range ({end}) above maximum ({}): {text}", field.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {text}"));
    }
    Ok(())
}

/// A number or, for months and weekdays, a name.
fn value(text: &str, field: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    match field.names.iter().position(|name| *name == lower) {
        Some(index) => Ok(index as u32 + field.min),
        None => number(text),
    }
}

fn number(text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| {
        format!("failed to parse int from {text}: strconv.Atoi: parsing \"{text}\": invalid syntax")
    })
}

/// An IANA time zone name, as far as it can be judged without the zone database: `UTC`, or
/// `Area/Location` names of letters, digits, `_`, `-` and `+`. `Local` is refused, as upstream
/// does.
pub(crate) fn time_zone(zone: &str) -> Result<(), String> {
    let unknown = || Err(format!("unknown time zone {zone}"));
    if zone.eq_ignore_ascii_case("local") {
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .to_owned(),
        );
    }
    if matches!(zone, "UTC" | "GMT" | "Etc/UTC" | "Zulu") {
        return Ok(());
    }
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.starts_with(|c: char| c.is_ascii_uppercase())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    };
    let parts: Vec<&str> = zone.split('/').collect();
    if parts.len() < 2 || !parts.iter().all(|p| part_ok(p)) {
        return unknown();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_as_robfig_cron() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * 0",
            "0 9-17 * * MON-FRI",
            "@hourly",
            "30 2 1,15 jan *",
            "@every 1h30m",
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("* * *", "expected exactly 5 fields, found 3: [* * *]"),
            ("@often", "unrecognized descriptor: @often"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
        ];
        for (schedule, message) in cases {
            assert_eq!(parse(schedule), Err(message.to_owned()), "{schedule}");
        }
    }

    #[test]
    fn time_zones() {
        assert!(time_zone("Europe/Paris").is_ok());
        assert!(time_zone("America/Argentina/Buenos_Aires").is_ok());
        assert!(time_zone("UTC").is_ok());
        assert_eq!(time_zone("Mars/Base"), Ok(()), "shape only: no zone database here");
        assert_eq!(time_zone("not a zone"), Err("unknown time zone not a zone".to_owned()));
        assert!(time_zone("Local").is_err());
    }
}
