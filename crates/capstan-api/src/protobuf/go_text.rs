//! The text Go's `encoding/json` gives the values whose protobuf form is numbers or bytes:
//! `[]byte` as standard base64, `metav1.Time` and `MicroTime` as RFC 3339 in UTC,
//! `time.Duration` as `time.Duration.String` writes it.

use super::DecodeError;
use crate::table::age::civil_from_days;

/// Standard base64 with padding, as `encoding/json` writes `[]byte`.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    // `chunks` never yields an empty chunk, so `chunk[0]` exists.
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (position, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if position <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The first second of year 0 and of year 10000: Go's RFC 3339 text has four-digit years.
const MIN_SECONDS: i64 = -62_167_219_200;
const MAX_SECONDS: i64 = 253_402_300_800;

/// `2026-11-23T00:00:00Z`, or with `micros` `2026-11-23T00:00:00.000000Z`: a timestamp of
/// seconds and nanoseconds since the Unix epoch, as `metav1.Time` and `MicroTime` marshal.
pub(super) fn rfc3339(seconds: i64, nanos: i64, micros: bool) -> Result<String, DecodeError> {
    // `time.Unix` normalises nanoseconds outside [0, 1e9) into the seconds.
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000));
    let nanos = nanos.rem_euclid(1_000_000_000);
    let Some(seconds) = seconds.filter(|s| (MIN_SECONDS..MAX_SECONDS).contains(s)) else {
        return Err(DecodeError(format!("timestamp {seconds:?}s is outside the years 0 to 9999")));
    };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if micros {
        text.push_str(&format!(".{:06}", nanos / 1000));
    }
    text.push('Z');
    Ok(text)
}

/// `time.Duration.String`: `1h0m0s`, `1.5s`, `300ms`, `0s`.
pub(super) fn duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if magnitude == 0 {
        return "0s".into();
    }
    let body = if magnitude < 1_000_000_000 {
        let (precision, unit) = if magnitude < 1_000 {
            (0, "ns")
        } else if magnitude < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (whole, fraction) = split_fraction(magnitude, precision);
        format!("{whole}{fraction}{unit}")
    } else {
        let (whole_seconds, fraction) = split_fraction(magnitude, 9);
        let seconds = whole_seconds % 60;
        let minutes = whole_seconds / 60 % 60;
        let hours = whole_seconds / 3600;
        match (hours, whole_seconds / 60) {
            (0, 0) => format!("{seconds}{fraction}s"),
            (0, _) => format!("{minutes}m{seconds}{fraction}s"),
            _ => format!("{hours}h{minutes}m{seconds}{fraction}s"),
        }
    };
    format!("{sign}{body}")
}

/// `value / 10^precision` and the fraction's text (`.25`), trailing zeros and an empty
/// fraction's point left out, as Go's `fmtFrac`.
fn split_fraction(value: u64, precision: u32) -> (u64, String) {
    let scale = 10u64.pow(precision);
    let digits = value % scale;
    if digits == 0 {
        return (value / scale, String::new());
    }
    let text = format!("{digits:0width$}", width = precision as usize);
    (value / scale, format!(".{}", text.trim_end_matches('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_encoding_json() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfe\xfd", "//79"),
        ] {
            assert_eq!(base64(bytes), text);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0, 0, false).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_305_600, 0, false).unwrap(), "2026-11-22T00:00:00Z");
        assert_eq!(rfc3339(1_795_392_000, 999_999_999, false).unwrap(), "2026-11-23T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0, false).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, 0, false).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(1_795_392_000, 123_456_789, true).unwrap(),
            "2026-11-23T00:00:00.123456Z"
        );
        assert_eq!(rfc3339(0, -1, true).unwrap(), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(MIN_SECONDS, 0, false).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_SECONDS - 1, 0, false).unwrap(), "9999-12-31T23:59:59Z");
        assert!(rfc3339(MAX_SECONDS, 0, false).is_err());
        assert!(rfc3339(i64::MAX, i64::MAX, false).is_err());
        assert!(rfc3339(i64::MIN, i64::MIN, true).is_err());
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-3_600_000_000_000, "-1h0m0s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ] {
            assert_eq!(duration(nanos), text, "{nanos}");
        }
    }
}
