//! Human-readable ages as apimachinery's `duration.HumanDuration` and `ShortHumanDuration`
//! print them (the AGE column of `kubectl get`).
//!
//! `HumanDuration` keeps two or three significant figures: seconds below 2 minutes (`119s`),
//! `XmYs` below 10 minutes, minutes below 3 hours (`179m`), `XhYm` below 8 hours, hours
//! below 2 days (`47h`), `XdYh` below 8 days, days below 2 years (`729d`), `XyYd` below 8
//! years, then years. A zero second part is left out (`5m`, `3h`, `2d`, `2y`). Durations a
//! little in the future (clock skew under 2 seconds) print as `0s`; further ones as
//! `<invalid>`.

use std::time::Duration;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_MINUTE: i128 = 60;
const SECONDS_PER_HOUR: i128 = 60 * SECONDS_PER_MINUTE;
const HOURS_PER_DAY: i128 = 24;
const DAYS_PER_YEAR: i128 = 365;

/// Formats a non-negative duration like `HumanDuration` (`45s`, `5m30s`, `3h2m`, `2d`).
pub fn human_duration(duration: Duration) -> String {
    human_duration_nanos(i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX))
}

/// Formats a signed number of seconds, e.g. now minus a creation timestamp, which can be
/// slightly negative when clocks disagree.
pub fn human_duration_secs(seconds: i64) -> String {
    human_duration_nanos(i128::from(seconds) * NANOS_PER_SECOND)
}

/// The age of something created at `created`, as of `now`.
pub fn age(created: jiff::Timestamp, now: jiff::Timestamp) -> String {
    human_duration_nanos(now.as_nanosecond() - created.as_nanosecond())
}

/// Formats a signed duration in nanoseconds like `HumanDuration`.
pub fn human_duration_nanos(nanos: i128) -> String {
    // Integer division truncates toward zero, like Go's int(d.Seconds()).
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 2 * SECONDS_PER_MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / SECONDS_PER_MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % SECONDS_PER_MINUTE, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / SECONDS_PER_HOUR;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 2 * HOURS_PER_DAY {
        return format!("{hours}h");
    }
    let days = hours / HOURS_PER_DAY;
    if hours < 8 * HOURS_PER_DAY {
        return with_remainder(days, "d", hours % HOURS_PER_DAY, "h");
    }
    if hours < 2 * DAYS_PER_YEAR * HOURS_PER_DAY {
        return format!("{days}d");
    }
    let years = days / DAYS_PER_YEAR;
    if hours < 8 * DAYS_PER_YEAR * HOURS_PER_DAY {
        return with_remainder(years, "y", days % DAYS_PER_YEAR, "d");
    }
    format!("{years}y")
}

/// Formats like `ShortHumanDuration`: one unit only (`59s`, `59m`, `23h`, `364d`, `1y`).
pub fn short_human_duration(duration: Duration) -> String {
    short_human_duration_nanos(i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX))
}

/// Formats a signed duration in nanoseconds like `ShortHumanDuration`.
pub fn short_human_duration_nanos(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < SECONDS_PER_MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / SECONDS_PER_MINUTE;
    if minutes < 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / SECONDS_PER_HOUR;
    if hours < HOURS_PER_DAY {
        return format!("{hours}h");
    }
    if hours < DAYS_PER_YEAR * HOURS_PER_DAY {
        return format!("{}d", hours / HOURS_PER_DAY);
    }
    format!("{}y", hours / HOURS_PER_DAY / DAYS_PER_YEAR)
}

fn with_remainder(major: i128, major_unit: &str, minor: i128, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major}{major_unit}")
    } else {
        format!("{major}{major_unit}{minor}{minor_unit}")
    }
}

#[cfg(test)]
mod tests;
