//! Durations written the way Kubernetes flags write them (Go's `time.ParseDuration`):
//! `500ms`, `5s`, `1m30s`, `1.5h`.

use std::time::Duration;

/// Why a duration flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing, or only a sign, was given.
    #[error("empty duration")]
    Empty,
    /// A negative duration makes no sense for a delay.
    #[error("duration {text:?} is negative")]
    Negative { text: String },
    /// A number without a unit (other than a plain `0`).
    #[error("duration {text:?} lacks a unit (one of ns, us, ms, s, m, h)")]
    MissingUnit { text: String },
    /// A unit other than ns, us (µs), ms, s, m and h.
    #[error("duration {text:?} has an unknown unit {unit:?} (one of ns, us, ms, s, m, h)")]
    UnknownUnit { text: String, unit: String },
    /// Anything else that is not a number followed by a unit.
    #[error("duration {text:?} is not a number followed by a unit, like 500ms, 5s or 1m30s")]
    Malformed { text: String },
    /// More than `Duration` holds.
    #[error("duration {text:?} is too long")]
    Overflow { text: String },
}

/// Parses a duration: one or more decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`), such as `300ms`, `1.5s` or `2h45m`; a plain `0` is zero. Fractions finer
/// than a nanosecond are dropped.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let rest = text.trim();
    let rest = match rest.strip_prefix('-') {
        // `-0s` is zero in Go; any other negative value is refused.
        Some(magnitude) => {
            let value = parse_magnitude(magnitude, text)?;
            return if value.is_zero() {
                Ok(value)
            } else {
                Err(DurationError::Negative { text: text.to_owned() })
            };
        }
        None => rest.strip_prefix('+').unwrap_or(rest),
    };
    parse_magnitude(rest, text)
}

/// The unsigned part: `<number><unit>` repeated.
fn parse_magnitude(mut rest: &str, text: &str) -> Result<Duration, DurationError> {
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let malformed = || DurationError::Malformed { text: text.to_owned() };
    let overflow = || DurationError::Overflow { text: text.to_owned() };
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(malformed());
        }
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(DurationError::MissingUnit { text: text.to_owned() }),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 =
            if whole.is_empty() { 0 } else { whole.parse().map_err(|_| overflow())? };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction scaled to the unit, digit by digit, so that `0.1s` is exactly 100ms.
        let mut scale = unit_nanos;
        for digit in fraction.chars() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            // The digit is ASCII (checked when the number was split off), so it converts.
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = after;
    }
    let seconds = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder of a division by 10^9 always fits in a u32.
    let subsec = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(seconds, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Duration, &str>) {
        let actual = parse_duration(text).map_err(|error| error.to_string());
        assert_eq!(actual, expected.map_err(str::to_owned), "parsing {text:?}");
    }

    #[test]
    fn accepted() {
        let ms = Duration::from_millis;
        check("0", Ok(Duration::ZERO));
        check("-0s", Ok(Duration::ZERO));
        check("500ms", Ok(ms(500)));
        check("5s", Ok(ms(5_000)));
        check("+5s", Ok(ms(5_000)));
        check(" 5s ", Ok(ms(5_000)));
        check("1m", Ok(ms(60_000)));
        check("1h", Ok(ms(3_600_000)));
        check("1m30s", Ok(ms(90_000)));
        check("2h45m0.5s", Ok(ms((2 * 3_600 + 45 * 60) * 1_000 + 500)));
        check("1.5s", Ok(ms(1_500)));
        check(".5s", Ok(ms(500)));
        check("1.s", Ok(ms(1_000)));
        check("0.1s", Ok(ms(100)));
        check("100us", Ok(Duration::from_micros(100)));
        check("100µs", Ok(Duration::from_micros(100)));
        check("7ns", Ok(Duration::from_nanos(7)));
        check("1.5ns", Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn refused() {
        check("", Err("empty duration"));
        check("-", Err("empty duration"));
        check("5", Err("duration \"5\" lacks a unit (one of ns, us, ms, s, m, h)"));
        check("1m5", Err("duration \"1m5\" lacks a unit (one of ns, us, ms, s, m, h)"));
        check("-5s", Err("duration \"-5s\" is negative"));
        check("5d", Err("duration \"5d\" has an unknown unit \"d\" (one of ns, us, ms, s, m, h)"));
        check(
            "s",
            Err("duration \"s\" is not a number followed by a unit, like 500ms, 5s or 1m30s"),
        );
        check(
            ".s",
            Err("duration \".s\" is not a number followed by a unit, like 500ms, 5s or 1m30s"),
        );
        check(
            "1.2.3s",
            Err("duration \"1.2.3s\" is not a number followed by a unit, like 500ms, 5s or 1m30s"),
        );
        check("99999999999999999999999h", Err("duration \"99999999999999999999999h\" is too long"));
    }
}
