//! Dates as Thai staff read them: Buddhist-era years (พ.ศ. = ค.ศ. + 543), Thai month
//! abbreviations, 24-hour times in the box's zone.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

const MONTHS: [&str; 12] = [
    "ม.ค.",
    "ก.พ.",
    "มี.ค.",
    "เม.ย.",
    "พ.ค.",
    "มิ.ย.",
    "ก.ค.",
    "ส.ค.",
    "ก.ย.",
    "ต.ค.",
    "พ.ย.",
    "ธ.ค.",
];

/// The Buddhist-era year of a Gregorian year.
pub fn be_year(gregorian: i32) -> i32 {
    gregorian + 543
}

/// `23 พ.ย. 2569 06:00` for an instant shown in `tz`.
pub fn format_datetime(at: DateTime<Utc>, tz: Tz) -> String {
    let l = tz.from_utc_datetime(&at.naive_utc());
    format!(
        "{} {} {} {:02}:{:02}:{:02}",
        l.day(),
        MONTHS[l.month0() as usize],
        be_year(l.year()),
        l.hour(),
        l.minute(),
        l.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buddhist_era_date_in_bangkok() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T23:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            format_datetime(at, chrono_tz::Asia::Bangkok),
            "23 พ.ย. 2569 06:00:00"
        );
    }
}
