//! Calendars: public and local holidays (`holidays.toml`), working days, and quiet hours.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::slots::ScheduleError;

/// A holiday as staff read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holiday {
    pub name: String,
    pub name_en: String,
}

/// The holidays a box knows of. Working days are Monday–Friday that are not holidays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeMap<NaiveDate, Holiday>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    holiday: Vec<RawHoliday>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: Option<String>,
    name: Option<String>,
    name_en: Option<String>,
}

impl Calendar {
    /// Parse a holidays file. Each entry needs a `date` (YYYY-MM-DD) and a Thai `name`.
    pub fn parse(file: &str, text: &str) -> Result<Calendar, ScheduleError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ScheduleError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim().to_string(),
        })?;
        let mut holidays = BTreeMap::new();
        for (i, h) in raw.holiday.into_iter().enumerate() {
            let label = h
                .date
                .clone()
                .unwrap_or_else(|| format!("holiday #{}", i + 1));
            let err = |message: String| ScheduleError::Syntax {
                file: file.to_string(),
                message: format!("{label}: {message}"),
            };
            let date = h
                .date
                .as_deref()
                .ok_or_else(|| err("missing 'date'".into()))?;
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                err(format!(
                    "date '{date}' is not YYYY-MM-DD (Gregorian, e.g. 2026-12-05)"
                ))
            })?;
            let name = h
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| err("missing 'name'".into()))?;
            let name_en = h.name_en.unwrap_or_default();
            if holidays.insert(date, Holiday { name, name_en }).is_some() {
                return Err(err("the date is listed twice".into()));
            }
        }
        Ok(Calendar { holidays })
    }

    pub fn holiday(&self, date: NaiveDate) -> Option<&Holiday> {
        self.holidays.get(&date)
    }

    /// Monday to Friday and not a holiday.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && self.holiday(date).is_none()
    }

    pub fn len(&self) -> usize {
        self.holidays.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holidays.is_empty()
    }
}

/// Times of day when nothing but an emergency may air, e.g. "21:00-05:00" (may wrap midnight).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuietHours(Vec<(NaiveTime, NaiveTime)>);

impl QuietHours {
    /// Parse ["21:00-05:00", "12:00-13:00"]. A range's end is exclusive.
    pub fn parse(ranges: &[String]) -> Result<QuietHours, String> {
        let mut out = Vec::new();
        for r in ranges {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| format!("quiet hours '{r}' must look like \"21:00-05:00\""))?;
            let t = |s: &str| {
                NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| {
                    format!("quiet hours '{r}': '{}' is not a time like 21:00", s.trim())
                })
            };
            let (a, b) = (t(a)?, t(b)?);
            if a == b {
                return Err(format!("quiet hours '{r}' are empty"));
            }
            out.push((a, b));
        }
        Ok(QuietHours(out))
    }

    /// The (start, end) local times of each range; end may be before start (wraps midnight).
    pub fn windows(&self) -> &[(NaiveTime, NaiveTime)] {
        &self.0
    }

    pub fn ranges(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(a, b)| format!("{}-{}", a.format("%H:%M"), b.format("%H:%M")))
            .collect()
    }

    /// Is the local time `t` inside quiet hours?
    pub fn contains(&self, t: NaiveTime) -> bool {
        self.0.iter().any(|&(a, b)| {
            if a < b {
                a <= t && t < b
            } else {
                t >= a || t < b
            }
        })
    }

    /// Does the local interval `[start, start + len)` touch quiet hours? (Checked minute by
    /// minute edges: a range starting or ending inside it, or one covering it.)
    pub fn overlaps(&self, start: chrono::NaiveDateTime, len: chrono::Duration) -> bool {
        if self.0.is_empty() || len <= chrono::Duration::zero() {
            return false;
        }
        let end = start + len;
        if self.contains(start.time()) {
            return true;
        }
        // Any quiet range beginning inside (start, end)?
        let mut day = start.date();
        while day <= end.date() {
            for &(a, _) in &self.0 {
                let begin = day.and_time(a);
                if begin > start && begin < end {
                    return true;
                }
            }
            day = match day.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn working_days_skip_weekends_and_holidays() {
        let c = Calendar::parse(
            "h.toml",
            "[[holiday]]\ndate='2026-12-07'\nname='ชดเชยวันพ่อแห่งชาติ'",
        )
        .unwrap();
        let table = [
            ("2026-12-04", true),  // Friday
            ("2026-12-05", false), // Saturday
            ("2026-12-06", false), // Sunday
            ("2026-12-07", false), // Monday, a holiday
            ("2026-12-08", true),  // Tuesday
        ];
        for (day, working) in table {
            assert_eq!(c.is_working_day(d(day)), working, "{day}");
        }
    }

    #[test]
    fn bad_holiday_files_say_where() {
        for (text, want) in [
            ("[[holiday]]\ndate='2026-13-01'\nname='x'", "2026-13-01"),
            ("[[holiday]]\nname='x'", "missing 'date'"),
            ("[[holiday]]\ndate='2026-01-01'", "missing 'name'"),
            ("[[holiday]]\ndate='2026-01-01'\nname='a'\n[[holiday]]\ndate='2026-01-01'\nname='b'", "twice"),
        ] {
            let e = Calendar::parse("holidays.toml", text).unwrap_err().to_string();
            assert!(e.contains("holidays.toml") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = QuietHours::parse(&["21:00-05:00".into()]).unwrap();
        let t = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(q.contains(t("21:00")) && q.contains(t("23:59")) && q.contains(t("04:59")));
        assert!(!q.contains(t("05:00")) && !q.contains(t("20:59")) && !q.contains(t("12:00")));
        let at = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let m = chrono::Duration::minutes;
        assert!(
            q.overlaps(at("2026-11-23 20:45"), m(30)),
            "runs into quiet hours"
        );
        assert!(
            !q.overlaps(at("2026-11-23 20:30"), m(30)),
            "ends exactly at 21:00"
        );
        assert!(q.overlaps(at("2026-11-23 04:50"), m(30)), "starts inside");
        assert!(!q.overlaps(at("2026-11-23 05:00"), m(30)));
        assert!(QuietHours::parse(&["9pm-5am".into()]).is_err());
    }
}
