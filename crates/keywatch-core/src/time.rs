//! Instants as CloudTrail writes them, and the locale strings KMS puts in `deletionDate`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A UTC instant with millisecond precision; orders and hashes cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// One day, in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// One hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 instant such as CloudTrail's `eventTime` ("2021-03-23T18:58:30Z").
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| Timestamp(d.timestamp_millis()))
    }

    /// Parses KMS's `deletionDate` in any shape seen in delivered records:
    /// "Apr 12, 2021 18:58:30 PM", "Nov 2, 2021, 11:25:25 PM", RFC 3339, or epoch seconds.
    pub fn parse_deletion_date(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(t) = Self::parse_rfc3339(s) {
            return Some(t);
        }
        if let Ok(secs) = s.parse::<f64>() {
            return Some(Timestamp((secs * 1000.0) as i64));
        }
        parse_locale_date(s)
    }

    /// Parses a clock as people give one (`--as-of`): an RFC 3339 instant, a date (midnight
    /// UTC), `now`, or `now` plus or minus whole seconds, minutes, hours, days or weeks
    /// (`now-7d`, `now+36h`, `now-90m`), counted from `now`.
    pub fn parse_as_of(s: &str, now: Timestamp) -> Option<Self> {
        let s = s.trim();
        if let Some(t) = Self::parse_rfc3339(s) {
            return Some(t);
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(Timestamp(
                d.and_time(NaiveTime::MIN).and_utc().timestamp_millis(),
            ));
        }
        let rest = s.strip_prefix("now")?;
        if rest.is_empty() {
            return Some(now);
        }
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let rest = &rest[1..];
        let unit_at = rest.len().checked_sub(1)?;
        let (amount, unit) = rest.split_at(unit_at);
        let amount: i64 = amount.parse().ok()?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => HOUR_MS,
            "d" => DAY_MS,
            "w" => 7 * DAY_MS,
            _ => return None,
        };
        let delta = amount.checked_mul(unit_ms)?.checked_mul(sign)?;
        now.0.checked_add(delta).map(Timestamp)
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// This instant plus `ms` milliseconds.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0 + ms)
    }

    /// As a chrono date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = if self.0 % 1000 == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Millis
        };
        f.write_str(&self.to_datetime().to_rfc3339_opts(secs, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 instant: {s}")))
    }
}

/// "Apr 12, 2021 18:58:30 PM" / "Nov 2, 2021, 11:25:25 PM": month name, day, year, time,
/// an AM/PM marker that is ignored when the hour is already on the 24-hour clock.
fn parse_locale_date(s: &str) -> Option<Timestamp> {
    let cleaned = s.replace(',', " ");
    let mut parts = cleaned.split_whitespace();
    let month = month_number(parts.next()?)?;
    let day: u32 = parts.next()?.parse().ok()?;
    let year: i32 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let mut hour: u32 = hms.next()?.parse().ok()?;
    let minute: u32 = hms.next()?.parse().ok()?;
    let second: u32 = hms.next().unwrap_or("0").parse().ok()?;
    match parts.next().map(str::to_ascii_uppercase).as_deref() {
        Some("PM") if hour < 12 => hour += 12,
        Some("AM") if hour == 12 => hour = 0,
        _ => {}
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let time = NaiveTime::from_hms_opt(hour, minute, second)?;
    Some(Timestamp(
        NaiveDateTime::new(date, time).and_utc().timestamp_millis(),
    ))
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.get(..3)?.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_instants_dates_and_times_relative_to_now() {
        let now = Timestamp::parse_rfc3339("2026-11-29T12:30:00Z").expect("now");
        let at = |s| Timestamp::parse_as_of(s, now).map(|t| t.to_string());
        assert_eq!(
            at("2026-11-01T08:00:00+01:00").as_deref(),
            Some("2026-11-01T07:00:00Z")
        );
        assert_eq!(at("2026-11-01").as_deref(), Some("2026-11-01T00:00:00Z"));
        assert_eq!(at("now").as_deref(), Some("2026-11-29T12:30:00Z"));
        assert_eq!(at("now-7d").as_deref(), Some("2026-11-22T12:30:00Z"));
        assert_eq!(at("now+36h").as_deref(), Some("2026-12-01T00:30:00Z"));
        assert_eq!(at("now-90m").as_deref(), Some("2026-11-29T11:00:00Z"));
        assert_eq!(at("now-2w").as_deref(), Some("2026-11-15T12:30:00Z"));
        assert_eq!(at("now-30s").as_deref(), Some("2026-11-29T12:29:30Z"));
        for bad in [
            "",
            "now-",
            "now-d",
            "now-7",
            "now-7y",
            "now*7d",
            "yesterday",
            "2026-13-01",
            "now-99999999999999999999d",
            "now-9223372036854775807w",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deletion_dates_in_every_documented_shape() {
        let t = |s| Timestamp::parse_deletion_date(s).map(|t| t.to_string());
        assert_eq!(
            t("Apr 12, 2021 18:58:30 PM").as_deref(),
            Some("2021-04-12T18:58:30Z")
        );
        assert_eq!(
            t("Nov 2, 2021, 11:25:25 PM").as_deref(),
            Some("2021-11-02T23:25:25Z")
        );
        assert_eq!(
            t("Dec 7, 2022, 12:05:00 AM").as_deref(),
            Some("2022-12-07T00:05:00Z")
        );
        assert_eq!(
            t("2021-04-12T18:58:30Z").as_deref(),
            Some("2021-04-12T18:58:30Z")
        );
        assert_eq!(t("1618253910").as_deref(), Some("2021-04-12T18:58:30Z"));
        assert_eq!(t("Foo 2, 2021"), None);
    }

    #[test]
    fn rfc3339_round_trips_through_display() {
        let t = Timestamp::parse_rfc3339("2021-03-23T18:58:30Z");
        assert_eq!(
            t.map(|t| t.to_string()).as_deref(),
            Some("2021-03-23T18:58:30Z")
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }
}
