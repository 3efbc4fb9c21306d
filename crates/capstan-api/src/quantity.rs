//! `resource.Quantity`: amounts such as `500m`, `1.5Gi`, `2e3`, parsed exactly, compared by
//! value, and printed in the canonical form kube-apiserver stores (`0.5` becomes `500m`).
//!
//! Grammar, as apimachinery's `ParseQuantity`:
//!
//! ```text
//! quantity := sign? number suffix
//! number   := digits | digits "." digits? | "." digits
//! suffix   := "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"      (decimal SI)
//!           | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"                        (binary SI)
//!           | ("e" | "E") sign? digits                                       (exponent)
//! ```
//!
//! The value is kept exactly in nano-units (10^-9), rounded away from zero below that, as
//! upstream keeps at most nine fractional digits.
//!
//! Deliberate differences from upstream: the canonical form is always printed (upstream
//! sometimes keeps the input text verbatim, such as `01` or `+1`); binary SI is not capped at
//! 2^63-1 (upstream turns `9Ei` into `9223372036854775807`); values beyond about 10^29 are
//! refused as too large instead of kept with arbitrary precision.

use std::cmp::Ordering;
use std::fmt;

/// Nano-units per unit.
const NANOS: i128 = 1_000_000_000;

/// Which family of suffixes a quantity is written in; its canonical form stays in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `m`, `k`, `M`, ...: powers of 1000.
    DecimalSi,
    /// `Ki`, `Mi`, ...: powers of 1024.
    BinarySi,
    /// `e3`, `E6`: powers of ten.
    DecimalExponent,
}

/// An amount of a resource.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("quantity is too large")]
    TooLarge,
}

impl Quantity {
    /// Parses the string form.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Format);
        }
        let (negative, rest) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        // Both digit runs may be empty: upstream reads `.`, `-` and a bare `Ki` as zero.
        if fraction.contains('.') {
            return Err(QuantityError::Format);
        }
        if suffix.chars().any(|c| !(c.is_ascii_digit() || "eEinumkKMGTP+-".contains(c))) {
            return Err(QuantityError::Format);
        }
        let (mut format, base, exponent) = parse_suffix(suffix)?;
        // The digits as one integer with a power-of-ten shift: trailing zeros move into the
        // shift, and digits past the 38 an i128 holds are dropped, remembering whether any of
        // them was non-zero (the value is then rounded up, as upstream rounds to nanos).
        let mut digits: String = whole.chars().chain(fraction.chars()).collect();
        let mut shift = -(fraction.len() as i64);
        while digits.ends_with('0') {
            digits.pop();
            shift += 1;
        }
        let digits = digits.trim_start_matches('0');
        let (kept, dropped) = digits.split_at(digits.len().min(38));
        let sticky = dropped.bytes().any(|b| b != b'0');
        shift += dropped.len() as i64;
        let mantissa: i128 =
            if kept.is_empty() { 0 } else { kept.parse().map_err(|_| QuantityError::TooLarge)? };
        let mut nanos = scale(mantissa, base, exponent, shift, sticky)?;
        if negative {
            nanos = -nanos;
        }
        // Less than one in binary SI has no binary form: it is kept as decimal, as upstream.
        if format == Format::BinarySi && nanos != 0 && nanos.abs() < NANOS {
            format = Format::DecimalSi;
        }
        Ok(Quantity { nanos, format })
    }

    /// A quantity of `value` whole units, in the given format.
    pub fn from_units(value: i64, format: Format) -> Self {
        Quantity { nanos: i128::from(value) * NANOS, format }
    }

    /// A quantity of `millis` thousandths (`500` → `500m`), in decimal SI.
    pub fn from_millis(millis: i64) -> Self {
        Quantity { nanos: i128::from(millis) * (NANOS / 1000), format: Format::DecimalSi }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in whole units, rounded away from zero, saturating.
    pub fn value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS))
    }

    /// The value in thousandths, rounded away from zero, saturating: what CPU requests are
    /// compared in.
    pub fn milli_value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS / 1000))
    }

    /// The exact value in nano-units.
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_add(other.nanos), format: self.format }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_sub(other.nanos), format: self.format }
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Self, QuantityError> {
        Quantity::parse(text)
    }
}

/// The suffix's format, and the power `base^exponent` it multiplies by.
fn parse_suffix(suffix: &str) -> Result<(Format, i128, i64), QuantityError> {
    let decimal = |exponent| Ok((Format::DecimalSi, 10, exponent));
    let binary = |exponent| Ok((Format::BinarySi, 2, exponent));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E']).ok_or(QuantityError::Suffix)?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            let exponent: i64 = exponent.parse().map_err(|_| QuantityError::TooLarge)?;
            Ok((Format::DecimalExponent, 10, exponent))
        }
    }
}

/// `mantissa × 10^decimal_shift × base^exponent` (plus a sliver when `sticky`), in
/// nano-units, rounded up.
fn scale(
    mantissa: i128,
    base: i128,
    exponent: i64,
    decimal_shift: i64,
    sticky: bool,
) -> Result<i128, QuantityError> {
    if mantissa == 0 {
        return Ok(0);
    }
    let decimal_exponent = if base == 10 { exponent } else { 0 };
    let ten_power = decimal_shift
        .checked_add(9)
        .and_then(|power| power.checked_add(decimal_exponent))
        // Only an absurd exponent overflows; its sign says which way.
        .unwrap_or(if decimal_exponent < 0 { i64::MIN } else { i64::MAX });
    if base == 10 && ten_power < -38 {
        // The mantissa has at most 38 digits: the value is below one nano, which rounds up.
        return Ok(1);
    }
    if !(-38..=38).contains(&ten_power) {
        return Err(QuantityError::TooLarge);
    }
    let (mut numerator, mut denominator) = (mantissa, 1i128);
    let power = 10i128.pow(ten_power.unsigned_abs() as u32);
    if ten_power >= 0 {
        numerator = numerator.checked_mul(power).ok_or(QuantityError::TooLarge)?;
    } else {
        denominator = power;
    }
    if base == 2 {
        let factor = 2i128
            .checked_pow(u32::try_from(exponent).map_err(|_| QuantityError::TooLarge)?)
            .ok_or(QuantityError::TooLarge)?;
        numerator = numerator.checked_mul(factor).ok_or(QuantityError::TooLarge)?;
    }
    let rounded = div_ceil(numerator, denominator);
    Ok(if sticky && numerator % denominator == 0 { rounded + 1 } else { rounded })
}

/// `numerator / denominator` (denominator positive), rounded away from zero.
fn div_away_from_zero(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator == 0 {
        quotient
    } else if numerator > 0 {
        quotient + 1
    } else {
        quotient - 1
    }
}

fn div_ceil(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator != 0 && (numerator > 0) == (denominator > 0) {
        quotient + 1
    } else {
        quotient
    }
}

fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value > 0 { i64::MAX } else { i64::MIN })
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical(self.nanos, self.format))
    }
}

/// The canonical string, as upstream's `CanonicalizeBytes`:
/// - zero is `0`;
/// - binary SI stays binary only for whole numbers of magnitude at least 1024, written as a
///   mantissa with every factor of 1024 taken into the suffix (`1.5Gi` → `1536Mi`); anything
///   else is written in decimal SI;
/// - decimal forms drop trailing zeros, then lower the exponent to a multiple of three
///   (`0.5` → `500m`, `2000` → `2k`, `1500` → `1500`), and write it as an SI suffix, or as
///   `eN` for the exponent format or exponents beyond the SI suffixes.
fn canonical(nanos: i128, format: Format) -> String {
    if nanos == 0 {
        return "0".to_owned();
    }
    if format == Format::BinarySi && nanos.abs() >= 1024 * NANOS && nanos % NANOS == 0 {
        let (mut mantissa, mut power) = (nanos / NANOS, 0);
        while mantissa % 1024 == 0 && power < 6 {
            mantissa /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return format!("{mantissa}{suffix}");
    }
    let (mut mantissa, mut exponent) = (nanos, -9i32);
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    match exponent.rem_euclid(3) {
        1 => {
            mantissa *= 10;
            exponent -= 1;
        }
        2 => {
            mantissa *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    let si = match exponent {
        -9 => Some("n"),
        -6 => Some("u"),
        -3 => Some("m"),
        0 => Some(""),
        3 => Some("k"),
        6 => Some("M"),
        9 => Some("G"),
        12 => Some("T"),
        15 => Some("P"),
        18 => Some("E"),
        _ => None,
    };
    match (format, si) {
        (Format::DecimalExponent, _) | (_, None) if exponent != 0 => {
            format!("{mantissa}e{exponent}")
        }
        (_, Some(suffix)) if format != Format::DecimalExponent => format!("{mantissa}{suffix}"),
        _ => mantissa.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from apimachinery's quantity tests: input, canonical form, format.
    #[test]
    fn parses_and_prints_as_upstream() {
        for (input, canonical, format) in [
            ("0n", "0", Format::DecimalSi),
            ("0u", "0", Format::DecimalSi),
            ("0m", "0", Format::DecimalSi),
            ("0Ki", "0", Format::BinarySi),
            ("0k", "0", Format::DecimalSi),
            ("0Mi", "0", Format::BinarySi),
            ("0M", "0", Format::DecimalSi),
            ("0Gi", "0", Format::BinarySi),
            ("0G", "0", Format::DecimalSi),
            ("0Ti", "0", Format::BinarySi),
            ("0T", "0", Format::DecimalSi),
            ("1Ki", "1Ki", Format::BinarySi),
            ("8Ki", "8Ki", Format::BinarySi),
            ("7Mi", "7Mi", Format::BinarySi),
            ("6Gi", "6Gi", Format::BinarySi),
            ("5Ti", "5Ti", Format::BinarySi),
            ("4Pi", "4Pi", Format::BinarySi),
            ("3Ei", "3Ei", Format::BinarySi),
            ("10Ti", "10Ti", Format::BinarySi),
            ("100Ti", "100Ti", Format::BinarySi),
            ("1e3", "1e3", Format::DecimalExponent),
            ("1e9", "1e9", Format::DecimalExponent),
            ("1e15", "1e15", Format::DecimalExponent),
            ("1e14", "100e12", Format::DecimalExponent),
            ("1e13", "10e12", Format::DecimalExponent),
            ("0.001", "1m", Format::DecimalSi),
            ("0.0005k", "500m", Format::DecimalSi),
            ("0.005", "5m", Format::DecimalSi),
            ("0.05", "50m", Format::DecimalSi),
            ("0.5", "500m", Format::DecimalSi),
            ("0.00050k", "500m", Format::DecimalSi),
            ("0.00500", "5m", Format::DecimalSi),
            ("0.05000", "50m", Format::DecimalSi),
            ("0.50000", "500m", Format::DecimalSi),
            ("0.5e0", "500e-3", Format::DecimalExponent),
            ("0.5e-1", "50e-3", Format::DecimalExponent),
            ("0.5e-2", "5e-3", Format::DecimalExponent),
            ("1.2e3", "1200", Format::DecimalExponent),
            ("1.3E+6", "1300e3", Format::DecimalExponent),
            ("1.40e9", "1400e6", Format::DecimalExponent),
            ("1.53E12", "1530e9", Format::DecimalExponent),
            ("1.6e15", "1600e12", Format::DecimalExponent),
            ("1.7E18", "1700e15", Format::DecimalExponent),
            ("9.01", "9010m", Format::DecimalSi),
            ("8.1k", "8100", Format::DecimalSi),
            ("40.1T", "40100G", Format::DecimalSi),
            ("300.2T", "300200G", Format::DecimalSi),
            ("2.5P", "2500T", Format::DecimalSi),
            ("1.01E", "1010P", Format::DecimalSi),
            ("3.001n", "4n", Format::DecimalSi),
            ("1.1E-9", "2e-9", Format::DecimalExponent),
            ("0.0000000001", "1n", Format::DecimalSi),
            ("0.0000000005", "1n", Format::DecimalSi),
            ("0.00000000050", "1n", Format::DecimalSi),
            ("0.5e-9", "1e-9", Format::DecimalExponent),
            ("0.9n", "1n", Format::DecimalSi),
            ("0.00000012345", "124n", Format::DecimalSi),
            ("0.00000012354", "124n", Format::DecimalSi),
            ("100.035Ki", "102435840m", Format::BinarySi),
            ("0.5Mi", "512Ki", Format::BinarySi),
            ("0.05Gi", "53687091200m", Format::BinarySi),
            ("0.025Ti", "27487790694400m", Format::BinarySi),
            ("0.000000000001Ki", "2n", Format::DecimalSi),
            (".001", "1m", Format::DecimalSi),
            (".0001k", "100m", Format::DecimalSi),
            ("1Gi", "1Gi", Format::BinarySi),
            ("1024Mi", "1Gi", Format::BinarySi),
            ("300Mi", "300Mi", Format::BinarySi),
            ("307200Ki", "300Mi", Format::BinarySi),
            ("6Ki", "6Ki", Format::BinarySi),
        ] {
            let quantity = Quantity::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(
                (quantity.to_string().as_str(), quantity.format()),
                (canonical, format),
                "{input:?}"
            );
            // The canonical form parses back to the same amount.
            assert_eq!(Quantity::parse(canonical).unwrap(), quantity, "{canonical:?}");
        }
    }

    #[test]
    fn refuses_what_upstream_refuses() {
        for input in [
            "1.1.M",
            "1+1.0M",
            "0.1mi",
            "0.1am",
            "aoeu",
            ".5i",
            "1i",
            "-3.01i",
            "-3.01e-",
            " 1",
            "1 ",
            "",
            "Non-Numeric",
            "invalid",
            "1..2",
            "1Z",
            "1e",
            "--1",
            "1K",
            "1ki",
            "1KI",
            "1k3",
            "1mm",
            "1E+",
            "1e3.5",
            "1 Ki",
            "1KiB",
            "1b",
            "++1",
            "1-",
            "0x10",
            "1,000",
            "1_000",
            "1e3e3",
            "1Gi ",
            "1ee3",
            "1e99999999999999999999",
            "\t1",
            "1e1.5",
        ] {
            assert!(Quantity::parse(input).is_err(), "{input:?} parsed");
        }
    }

    #[test]
    fn extreme_inputs_are_handled_without_panicking() {
        let q = |text: &str| Quantity::parse(text);
        assert_eq!(q("1e9223372036854775807"), Err(QuantityError::TooLarge));
        for tiny in [
            "1e-48",
            "1e-70",
            "1e-9223372036854775807",
            "0.000000000000000000000000000000000000000000000000001",
        ] {
            assert_eq!(q(tiny).unwrap().nano_value(), 1, "{tiny}");
        }
        let long_one = format!("1.{}", "0".repeat(60));
        assert_eq!(q(&long_one).unwrap(), q("1").unwrap());
        assert_eq!(
            q("0.1234567890123456789012345678901234567890").unwrap().to_string(),
            "123456790n"
        );
        assert_eq!(q(&format!("{}1", "0".repeat(100))).unwrap().to_string(), "1");
    }

    #[test]
    fn empty_numbers_are_zero_as_upstream() {
        for input in [".", "-", "-.", "Ki", "m", "0.0", "00"] {
            assert!(Quantity::parse(input).unwrap().is_zero(), "{input:?}");
        }
    }

    #[test]
    fn values_round_away_from_zero() {
        let check = |input: &str, value: i64, milli: i64| {
            let quantity = Quantity::parse(input).unwrap();
            assert_eq!((quantity.value(), quantity.milli_value()), (value, milli), "{input}");
        };
        check("1u", 1, 1);
        check("499m", 1, 499);
        check("1.5", 2, 1500);
        check("500m", 1, 500);
        check("1Gi", 1_073_741_824, 1_073_741_824_000);
        check("-19.32", -20, -19_320);
        check("-1n", -1, -1);
        check("0", 0, 0);
        check("100E", i64::MAX, i64::MAX);
    }

    #[test]
    fn compares_by_amount_whatever_the_format() {
        let q = |text: &str| Quantity::parse(text).unwrap();
        assert!(q("10000T") > q("100Gi"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert!(q("500m") < q("1"));
        assert_eq!((q("250m") + q("250m")).to_string(), "500m");
        assert_eq!((q("1Gi") - q("512Mi")).to_string(), "512Mi");
        assert_eq!(Quantity::from_millis(1500).to_string(), "1500m");
        assert_eq!(Quantity::from_units(2048, Format::BinarySi).to_string(), "2Ki");
    }

    #[test]
    fn every_short_string_parses_or_is_refused() {
        // Nothing panics, and whatever parses prints something that parses to the same amount.
        let alphabet = ['1', '0', '.', '-', '+', 'e', 'E', 'K', 'i', 'm', 'G', '9'];
        crate::exhaustive::every_string(&alphabet, 5, |text| {
            if let Ok(quantity) = Quantity::parse(text) {
                let printed = quantity.to_string();
                assert_eq!(
                    Quantity::parse(&printed).ok(),
                    Some(quantity),
                    "{text:?} printed {printed:?}"
                );
            }
        });
    }
}
