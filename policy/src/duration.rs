//! Durations as operators write them: `30s`, `15m`, `1h30m`, `2d`.

use std::time::Duration;

/// Why a duration did not parse. Not security-sensitive: it catches misconfiguration at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text was empty.
    #[error("empty duration")]
    Empty,
    /// A number was not followed by one of `s`, `m`, `h`, `d`.
    #[error("invalid duration `{0}`: expected e.g. 30s, 15m, 1h30m, 2d")]
    Invalid(String),
    /// The value overflowed.
    #[error("duration `{0}` is too large")]
    TooLarge(String),
}

/// Parses `1h30m`-style durations. Kept tiny and dependency-free because the engine only needs
/// seconds granularity.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| DurationError::TooLarge(t.to_owned()))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(DurationError::Invalid(t.to_owned())),
        };
        let n = num
            .take()
            .ok_or_else(|| DurationError::Invalid(t.to_owned()))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLarge(t.to_owned()))?;
    }
    if num.is_some() {
        return Err(DurationError::Invalid(t.to_owned()));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration back in the same notation, for explanations and challenges.
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if s >= unit {
            out.push_str(&(s / unit).to_string());
            out.push(name);
            s %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("30s", 30),
            ("15m", 900),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0s", 0),
        ];
        for (t, secs) in ok {
            assert_eq!(parse_duration(t), Ok(Duration::from_secs(secs)), "{t}");
        }
        for t in ["", "15", "m", "15x", "1.5h", "-1m", "99999999999999999999d"] {
            assert!(parse_duration(t).is_err(), "{t}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}
