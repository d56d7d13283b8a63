//! Durations as users write them, in flags and in labels: `500ms`, `2s`,
//! `1m30s`, `1.5s` (humantime's grammar); a bare number is milliseconds, as in
//! HAProxy.

use std::time::Duration;

/// Parses a duration; refuses what is finer than a millisecond, since
/// HAProxy's config (where label durations end up) counts in milliseconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let bad = || format!("{value:?} is not a duration like 500ms, 2s or 1m30s (a bare number is milliseconds)");
    let duration = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_millis(value.parse().map_err(|_| bad())?)
    } else {
        humantime::parse_duration(value).map_err(|_| bad())?
    };
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{value:?}: use whole milliseconds"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        let ms = Duration::from_millis;
        for (text, expected) in [
            ("250ms", ms(250)),
            ("2s", ms(2_000)),
            ("1m", ms(60_000)),
            ("1m30s", ms(90_000)),
            ("1m 30s", ms(90_000)),
            ("1h", ms(3_600_000)),
            ("1s500ms", ms(1_500)),
            ("1.5s", ms(1_500)),
            ("0s", ms(0)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_bare_number_is_milliseconds() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn what_is_refused() {
        for bad in [
            "",
            "s",
            "fast",
            "-1s",
            "1.0005s",
            "2 parsecs",
            "250us",
            "1s1ns",
            "99999999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("fast").unwrap_err().contains("1m30s"));
        assert!(parse_duration("250us").unwrap_err().contains("whole milliseconds"));
    }
}
