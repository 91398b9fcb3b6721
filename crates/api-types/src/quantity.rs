//! Kubernetes resource quantities (`500m`, `2`, `1Gi`, `1.5G`, `1e3`), parsed to whole
//! thousandths ("milli-units") so that sums and comparisons are exact integer arithmetic.
//!
//! The grammar is apimachinery's: an optionally signed decimal number followed by a binary
//! suffix (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M`,
//! `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`). A value finer than a
//! thousandth rounds up, as apimachinery rounds when it scales a quantity to milli-units.

/// A quantity in thousandths of its unit (`500m` is 500, `1` is 1000, `1Ki` is 1,024,000).
pub type Milli = i64;

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax,
    #[error("quantity is too large")]
    TooLarge,
}

/// Parses a quantity into thousandths, rounding a finer fraction up.
pub fn parse(text: &str) -> Result<Milli, QuantityError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(QuantityError::Syntax);
    }
    // mantissa × 10^exponent × 1024^binary, in milli-units.
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(digit - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    let (mut exponent, binary) = scale(suffix)?;
    exponent += 3 - i32::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
    let mut value = mantissa
        .checked_mul(1024_i128.pow(binary))
        .ok_or(QuantityError::TooLarge)?;
    if exponent >= 0 {
        value = 10_i128
            .checked_pow(exponent as u32)
            .and_then(|power| value.checked_mul(power))
            .ok_or(QuantityError::TooLarge)?;
    } else {
        let divisor = 10_i128
            .checked_pow(exponent.unsigned_abs())
            .unwrap_or(i128::MAX);
        value = value / divisor + i128::from(value % divisor != 0);
    }
    let value = Milli::try_from(value).map_err(|_| QuantityError::TooLarge)?;
    Ok(if negative { -value } else { value })
}

/// The decimal exponent and the power of 1024 a suffix stands for.
fn scale(suffix: &str) -> Result<(i32, u32), QuantityError> {
    Ok(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| QuantityError::Syntax)?;
            if power.abs() > 30 {
                return Err(QuantityError::TooLarge);
            }
            (power, 0)
        }
        _ => return Err(QuantityError::Syntax),
    })
}

/// Prints thousandths the way apimachinery prints a canonical quantity: whole numbers
/// plainly (with the largest binary suffix that divides them exactly when `binary`, as
/// for memory and storage), fractions in milli-units.
pub fn format(value: Milli, binary: bool) -> String {
    if value % 1000 != 0 {
        return format!("{value}m");
    }
    let mut whole = value / 1000;
    if binary && whole != 0 {
        let mut suffix = "";
        for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
            if whole % 1024 != 0 {
                break;
            }
            whole /= 1024;
            suffix = next;
        }
        return format!("{whole}{suffix}");
    }
    whole.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffixes() {
        for (text, milli) in [
            ("0", 0),
            ("1", 1000),
            ("500m", 500),
            ("1.5", 1500),
            ("+2", 2000),
            ("-3", -3000),
            ("1k", 1_000_000),
            ("1Ki", 1_024_000),
            ("2Gi", 2 * 1024 * 1024 * 1024 * 1000),
            ("1G", 1_000_000_000_000),
            ("1e3", 1_000_000),
            ("5E-1", 500),
            (".5", 500),
            ("1n", 1),
            ("1500u", 2),
            ("0.0001", 1),
        ] {
            assert_eq!(parse(text), Ok(milli), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_quantity() {
        for text in ["", "abc", "1Q", "1.2.3", "--1", "1 Gi", "."] {
            assert_eq!(parse(text), Err(QuantityError::Syntax), "{text:?}");
        }
        assert_eq!(parse("9Ei"), Err(QuantityError::TooLarge));
        assert_eq!(parse("1e99"), Err(QuantityError::TooLarge));
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(500, false), "500m");
        assert_eq!(format(3000, false), "3");
        assert_eq!(format(1_024_000, true), "1Ki");
        assert_eq!(format(1_536 * 1024 * 1000, true), "1536Ki");
        assert_eq!(format(4 * 1024 * 1024 * 1024 * 1000, true), "4Gi");
        assert_eq!(format(1000, true), "1");
        assert_eq!(format(0, true), "0");
    }
}
