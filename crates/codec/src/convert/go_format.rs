//! Text forms of Go's time values as Kubernetes JSON writes them: `metav1.Time` (RFC 3339,
//! seconds), `metav1.MicroTime` (RFC 3339, microseconds) and `metav1.Duration` (Go's
//! `time.Duration.String`, like `1h2m3.5s`).

use crate::error::WireProblem;

const SECONDS_PER_DAY: i64 = 86_400;

/// `2006-01-02T15:04:05Z`, or `2006-01-02T15:04:05.000000Z` when `micros` is given (always six
/// digits, as Go's `RFC3339Micro` layout writes them). Go refuses years outside 0..=9999.
pub(super) fn format_rfc3339(seconds: i64, micros: Option<u32>) -> Result<String, WireProblem> {
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(WireProblem::TimeOutOfRange { seconds });
    }
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if let Some(micros) = micros {
        text.push_str(&format!(".{micros:06}"));
    }
    text.push('Z');
    Ok(text)
}

/// Proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String`: `0s`, `1.5µs`, `300ms`, `2m0s`, `1h0m0.5s`, `-3s`.
pub(super) fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let magnitude = nanos.unsigned_abs();
    let text = if magnitude < 1_000_000_000 {
        let (unit, precision) = match magnitude {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (whole, fraction) = split_fraction(magnitude, precision);
        format!("{whole}{fraction}{unit}")
    } else {
        let (total_seconds, fraction) = split_fraction(magnitude, 9);
        let total_minutes = total_seconds / 60;
        let mut text = format!("{}{fraction}s", total_seconds % 60);
        if total_minutes > 0 {
            text = format!("{}m{text}", total_minutes % 60);
            let hours = total_minutes / 60;
            if hours > 0 {
                text = format!("{hours}h{text}");
            }
        }
        text
    };
    if nanos < 0 { format!("-{text}") } else { text }
}

/// Splits `value / 10^precision` into its whole part and `.digits` without trailing zeros.
fn split_fraction(value: u64, precision: u32) -> (u64, String) {
    let divisor = 10_u64.pow(precision);
    let fraction = value % divisor;
    if fraction == 0 {
        return (value / divisor, String::new());
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    (
        value / divisor,
        format!(".{}", digits.trim_end_matches('0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        assert_eq!(
            format_rfc3339(0, None).expect("in range"),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            format_rfc3339(1_732_238_400, None).expect("in range"),
            "2024-11-22T01:20:00Z"
        );
        assert_eq!(
            format_rfc3339(951_782_400, Some(5)).expect("in range"),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            format_rfc3339(-1, None).expect("in range"),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339(253_402_300_799, None).expect("in range"),
            "9999-12-31T23:59:59Z"
        );
        assert!(format_rfc3339(253_402_300_800, None).is_err());
        assert!(format_rfc3339(i64::MIN, None).is_err());
        assert!(format_rfc3339(i64::MAX, None).is_err());
    }

    #[test]
    fn formats_durations_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_000_000_000, "1s"),
            (120_000_000_000, "2m0s"),
            (3_600_500_000_000, "1h0m0.5s"),
            (-3_000_000_000, "-3s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_go_duration(nanos), text);
        }
    }
}
