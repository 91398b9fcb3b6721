//! The apimachinery `duration_test.go` cases, plus the examples the server relies on.

use super::*;

const MILLISECOND: i128 = 1_000_000;
const SECOND: i128 = 1_000 * MILLISECOND;
const MINUTE: i128 = 60 * SECOND;
const HOUR: i128 = 60 * MINUTE;
const DAY: i128 = 24 * HOUR;
const YEAR: i128 = 365 * DAY;

#[test]
fn human_duration_examples() {
    let cases = [
        (SECOND, "1s"),
        (70 * SECOND, "70s"),
        (190 * SECOND, "3m10s"),
        (70 * MINUTE, "70m"),
        (47 * HOUR, "47h"),
        (49 * HOUR, "2d1h"),
        ((8 * 24 + 2) * HOUR, "8d"),
        (367 * DAY, "367d"),
        ((365 * 2 * 24 + 25) * HOUR, "2y1d"),
        ((365 * 8 * 24 + 2) * HOUR, "8y"),
        (45 * SECOND, "45s"),
        (5 * MINUTE, "5m"),
        (5 * MINUTE + 30 * SECOND, "5m30s"),
        (3 * HOUR + 2 * MINUTE, "3h2m"),
        (2 * DAY, "2d"),
        (3 * DAY + 4 * HOUR, "3d4h"),
        (400 * DAY, "400d"),
        (2 * YEAR + 100 * DAY, "2y100d"),
    ];
    for (nanos, want) in cases {
        assert_eq!(human_duration_nanos(nanos), want, "{nanos}ns");
    }
}

#[test]
fn human_duration_boundaries() {
    let cases = [
        (-2 * SECOND, "<invalid>"),
        (-2 * SECOND + 1, "0s"),
        (0, "0s"),
        (SECOND - MILLISECOND, "0s"),
        (2 * MINUTE - MILLISECOND, "119s"),
        (2 * MINUTE, "2m"),
        (2 * MINUTE + SECOND, "2m1s"),
        (10 * MINUTE - MILLISECOND, "9m59s"),
        (10 * MINUTE, "10m"),
        (10 * MINUTE + SECOND, "10m"),
        (3 * HOUR - MILLISECOND, "179m"),
        (3 * HOUR, "3h"),
        (3 * HOUR + MINUTE, "3h1m"),
        (8 * HOUR - MILLISECOND, "7h59m"),
        (8 * HOUR, "8h"),
        (8 * HOUR + 59 * MINUTE, "8h"),
        (2 * DAY - MILLISECOND, "47h"),
        (2 * DAY, "2d"),
        (2 * DAY + HOUR, "2d1h"),
        (8 * DAY - MILLISECOND, "7d23h"),
        (8 * DAY, "8d"),
        (8 * DAY + 23 * HOUR, "8d"),
        (2 * YEAR - MILLISECOND, "729d"),
        (2 * YEAR, "2y"),
        (2 * YEAR + 23 * HOUR, "2y"),
        (2 * YEAR + 23 * HOUR + 59 * MINUTE, "2y"),
        (2 * YEAR + DAY - MILLISECOND, "2y"),
        (2 * YEAR + DAY, "2y1d"),
        (3 * YEAR, "3y"),
        (4 * YEAR, "4y"),
        (5 * YEAR, "5y"),
        (6 * YEAR, "6y"),
        (7 * YEAR, "7y"),
        (8 * YEAR - MILLISECOND, "7y364d"),
        (8 * YEAR, "8y"),
        (8 * YEAR + 364 * DAY, "8y"),
        (9 * YEAR, "9y"),
    ];
    for (nanos, want) in cases {
        assert_eq!(human_duration_nanos(nanos), want, "{nanos}ns");
    }
}

#[test]
fn short_human_duration_boundaries() {
    let cases = [
        (-2 * SECOND, "<invalid>"),
        (-2 * SECOND + 1, "0s"),
        (0, "0s"),
        (SECOND - MILLISECOND, "0s"),
        (SECOND, "1s"),
        (2 * SECOND - MILLISECOND, "1s"),
        (MINUTE - MILLISECOND, "59s"),
        (MINUTE, "1m"),
        (2 * MINUTE - MILLISECOND, "1m"),
        (HOUR - MILLISECOND, "59m"),
        (HOUR, "1h"),
        (2 * HOUR - MILLISECOND, "1h"),
        (DAY - MILLISECOND, "23h"),
        (DAY, "1d"),
        (2 * DAY - MILLISECOND, "1d"),
        (YEAR - MILLISECOND, "364d"),
        (YEAR, "1y"),
        (2 * YEAR - MILLISECOND, "1y"),
        (2 * YEAR, "2y"),
    ];
    for (nanos, want) in cases {
        assert_eq!(short_human_duration_nanos(nanos), want, "{nanos}ns");
    }
}

#[test]
fn convenience_entry_points() {
    assert_eq!(human_duration(Duration::from_secs(330)), "5m30s");
    assert_eq!(short_human_duration(Duration::from_secs(330)), "5m");
    assert_eq!(
        human_duration(Duration::MAX),
        format!("{}y", u64::MAX / 31_536_000)
    );
    assert_eq!(human_duration_secs(-1), "0s");
    assert_eq!(human_duration_secs(-2), "<invalid>");
    assert_eq!(human_duration_secs(11_000), "3h3m");
    let created: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().expect("valid timestamp");
    let now: jiff::Timestamp = "2024-01-03T01:00:00Z".parse().expect("valid timestamp");
    assert_eq!(age(created, now), "2d1h");
    assert_eq!(age(now, created), "<invalid>");
}
