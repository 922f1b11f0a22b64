//! Time rules on a zone's wall clock.
//!
//! The instant comes in as UTC and is converted with `chrono-tz`, so DST is the zone database's
//! business: on a spring-forward day the skipped hour simply never appears on the wall clock, and
//! on a fall-back day the repeated hour is inside the window both times.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// Seconds in a day; `24:00` as a window end.
pub(crate) const DAY: u32 = 86_400;

/// A compiled `time:` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeCond {
    /// Bit `n` set = weekday `n` (Monday = 0) allowed; 0 = any day.
    pub(crate) days: u8,
    /// `[from, to)` in seconds since local midnight; `from > to` crosses midnight.
    pub(crate) window: Option<(u32, u32)>,
    /// Inclusive local date ranges; empty = any date.
    pub(crate) dates: Vec<(NaiveDate, NaiveDate)>,
    /// Zone of the wall clock.
    pub(crate) tz: Tz,
}

impl TimeCond {
    /// Whether `now` falls inside the rule.
    pub(crate) fn holds(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let secs = local.num_seconds_from_midnight();
        let date = local.date_naive();
        // The day a window belongs to is the day it starts: with `fri 22:00-06:00`,
        // Saturday 02:00 is still Friday's window.
        let mut day = local.weekday();
        if let Some((from, to)) = self.window {
            let inside = if from < to {
                secs >= from && secs < to
            } else {
                if secs < to {
                    day = day.pred();
                }
                secs >= from || secs < to
            };
            if !inside {
                return false;
            }
        }
        if self.days != 0 && self.days & day_bit(day) == 0 {
            return false;
        }
        self.dates.is_empty() || self.dates.iter().any(|(a, b)| date >= *a && date <= *b)
    }

    /// Describes the rule, for explanations: `mon,tue 07:00-20:00 Europe/Paris`.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.days != 0 {
            let names: Vec<&str> = ALL_DAYS
                .iter()
                .filter(|d| self.days & day_bit(**d) != 0)
                .map(|d| day_name(*d))
                .collect();
            parts.push(names.join(","));
        }
        if let Some((f, t)) = self.window {
            parts.push(format!("{}-{}", hhmm(f), hhmm(t)));
        }
        for (a, b) in &self.dates {
            parts.push(format!("{a}..{b}"));
        }
        parts.push(self.tz.name().to_owned());
        parts.join(" ")
    }

    /// Describes `now` on this rule's wall clock, for explanations.
    pub(crate) fn describe_now(&self, now: DateTime<Utc>) -> String {
        let local = now.with_timezone(&self.tz);
        format!(
            "{} {} {}",
            day_name(local.weekday()),
            local.format("%Y-%m-%d %H:%M"),
            self.tz.name()
        )
    }
}

pub(crate) const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

pub(crate) fn day_bit(d: Weekday) -> u8 {
    1 << d.num_days_from_monday()
}

pub(crate) fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// Parses `mon`..`sun` (also full names, any case).
pub(crate) fn parse_day(s: &str) -> Option<Weekday> {
    let l = s.to_ascii_lowercase();
    ALL_DAYS
        .iter()
        .copied()
        .find(|d| l == day_name(*d) || l == full_name(*d))
}

fn full_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

/// Parses `HH:MM` (00:00..=24:00) into seconds since midnight.
pub(crate) fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 3600 + m * 60)
}

fn hhmm(secs: u32) -> String {
    format!("{:02}:{:02}", secs / 3600, (secs % 3600) / 60)
}
