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
        // Every CloudTrail record and every stored timeline carries instants in UTC to the
        // second or millisecond: read those directly, anything else as chrono reads it.
        parse_utc_fast(s.as_bytes()).or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| Timestamp(d.timestamp_millis()))
        })
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
    /// RFC 3339 in UTC, to the second, or to the millisecond when there are any
    /// ("2021-03-23T18:58:30Z", "2021-03-23T18:58:30.250Z").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 24];
        match format_utc_fast(self.0, &mut buf) {
            Some(text) => f.pad(text),
            None => {
                let secs = if self.0 % 1000 == 0 {
                    SecondsFormat::Secs
                } else {
                    SecondsFormat::Millis
                };
                f.pad(&self.to_datetime().to_rfc3339_opts(secs, true))
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without chrono; `None` for
/// any other shape (left to chrono, which reads every RFC 3339 form).
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    if !(b.len() == 20 || b.len() == 24) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = if b.len() == 24 {
        if b[19] != b'.' {
            return None;
        }
        num(20..23)?
    } else {
        0
    };
    // A leap second (60) and anything out of range are chrono's to judge.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(Timestamp(secs * 1000 + millis))
}

/// Writes [`Timestamp`]'s display form into `buf` for years 0000–9999 and returns it; `None`
/// for other years, which chrono writes with a sign.
fn format_utc_fast(ms: i64, buf: &mut [u8; 24]) -> Option<&str> {
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    fn put(buf: &mut [u8; 24], at: usize, width: usize, mut n: i64) {
        for c in buf[at..at + width].iter_mut().rev() {
            *c = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    put(buf, 0, 4, year);
    put(buf, 5, 2, month);
    put(buf, 8, 2, day);
    put(buf, 11, 2, in_day / HOUR_MS);
    put(buf, 14, 2, in_day / 60_000 % 60);
    put(buf, 17, 2, in_day / 1000 % 60);
    let millis = in_day % 1000;
    for (i, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        buf[i] = c;
    }
    let len = if millis == 0 {
        buf[19] = b'Z';
        20
    } else {
        buf[19] = b'.';
        put(buf, 20, 3, millis);
        buf[23] = b'Z';
        24
    };
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buf[..len]).ok()
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        match format_utc_fast(self.0, &mut buf) {
            // Timelines hold thousands: written without the formatting machinery.
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
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

    proptest::proptest! {
        /// The direct reading and writing of UTC instants agree with chrono's for every
        /// instant from 0001 to 9999, to the second and to the millisecond.
        #[test]
        fn direct_rfc3339_agrees_with_chrono(
            ms in -62_135_596_800_000i64..253_402_300_799_999,
            whole in proptest::bool::ANY,
        ) {
            let ms = if whole { ms - ms.rem_euclid(1000) } else { ms };
            let t = Timestamp(ms);
            let secs = if ms % 1000 == 0 { SecondsFormat::Secs } else { SecondsFormat::Millis };
            let chrono_text = t.to_datetime().to_rfc3339_opts(secs, true);
            proptest::prop_assert_eq!(t.to_string(), chrono_text.clone());
            proptest::prop_assert_eq!(parse_utc_fast(chrono_text.as_bytes()), Some(t));
            let chrono_read = DateTime::parse_from_rfc3339(&chrono_text)
                .ok()
                .map(|d| Timestamp(d.timestamp_millis()));
            proptest::prop_assert_eq!(chrono_read, Some(t));
        }

        /// Whatever text the direct reading accepts, chrono reads to the same instant.
        #[test]
        fn direct_rfc3339_accepts_only_what_chrono_reads_alike(
            text in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{3})?Z",
        ) {
            let chrono_read = DateTime::parse_from_rfc3339(&text)
                .ok()
                .map(|d| Timestamp(d.timestamp_millis()));
            if let Some(t) = parse_utc_fast(text.as_bytes()) {
                proptest::prop_assert_eq!(Some(t), chrono_read);
            }
            proptest::prop_assert_eq!(Timestamp::parse_rfc3339(&text), chrono_read);
        }
    }

    #[test]
    fn instants_outside_the_four_digit_years_and_other_forms_are_read_and_written_by_chrono() {
        let t = |s| Timestamp::parse_rfc3339(s).map(|t| t.to_string());
        assert_eq!(
            t("2021-03-23T20:58:30+02:00").as_deref(),
            Some("2021-03-23T18:58:30Z")
        );
        assert_eq!(
            t("2021-03-23T18:58:30.5Z").as_deref(),
            Some("2021-03-23T18:58:30.500Z")
        );
        assert_eq!(t("2021-02-29T18:58:30Z"), None);
        assert_eq!(
            t("2024-02-29T23:59:59.999Z").as_deref(),
            Some("2024-02-29T23:59:59.999Z")
        );
        let far = Timestamp::from_millis(300_000_000_000_000);
        assert_eq!(
            far.to_string(),
            far.to_datetime().to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        assert!(far.to_string().starts_with('+'));
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
