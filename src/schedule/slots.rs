//! Slot files (`schedules/*.toml`) and the occurrences of their slots in a time range.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, QuietHours};
use super::duration::parse_duration;

/// A broadcast slot, validated.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    /// The file it came from, for messages.
    pub file: String,
    pub cron_expr: String,
    pub cron: cron::Schedule,
    pub length: Duration,
    pub outputs: Vec<String>,
    /// File name relative to the audio dir.
    pub chime: Option<String>,
    /// Played after the last item; a file name in the audio dir.
    pub outro: Option<String>,
    /// Which days it runs on.
    pub days: Days,
    /// Only in these months (1–12); empty = every month.
    pub months: Vec<u32>,
    /// Only on dates inside one of these inclusive ranges; empty = any date.
    pub dates: Vec<(NaiveDate, NaiveDate)>,
}

/// Which days a slot runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Days {
    /// Every day.
    Every,
    /// Monday–Friday, not a holiday.
    Working,
    /// Holidays only (`holiday = true`).
    Holidays,
}

impl Slot {
    /// Does this slot run on the local date `date`?
    pub fn runs_on(&self, date: NaiveDate, calendar: &Calendar) -> bool {
        let day_ok = match self.days {
            Days::Every => true,
            Days::Working => calendar.is_working_day(date),
            Days::Holidays => calendar.holiday(date).is_some(),
        };
        day_ok
            && (self.months.is_empty() || self.months.contains(&date.month()))
            && (self.dates.is_empty() || self.dates.iter().any(|(a, b)| *a <= date && date <= *b))
    }
}

/// What is wrong with a slot file, naming the file and the slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{file}: not a valid slot file: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: slot '{slot}': {message}")]
    Slot {
        file: String,
        slot: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    slot: Vec<RawSlot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    name: Option<String>,
    cron: Option<String>,
    length: Option<String>,
    outputs: Option<Vec<String>>,
    chime: Option<String>,
    outro: Option<String>,
    days: Option<String>,
    holiday: Option<bool>,
    months: Option<Vec<u32>>,
    dates: Option<Vec<String>>,
}

/// Parse one slot file. `known_outputs` are the configured output names; a slot naming another
/// output is an error. Every slot needs a name, a cron line (6 or 7 fields: seconds first) and a
/// length; `outputs` defaults to all outputs.
pub fn parse_slot_file(
    file: &str,
    text: &str,
    known_outputs: &[String],
) -> Result<Vec<Slot>, ScheduleError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| ScheduleError::Syntax {
        file: file.to_string(),
        message: e.to_string().trim().to_string(),
    })?;
    let mut out: Vec<Slot> = Vec::new();
    for (i, r) in raw.slot.into_iter().enumerate() {
        let slot_name = r.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let err = |message: String| ScheduleError::Slot {
            file: file.to_string(),
            slot: slot_name.clone(),
            message,
        };
        let name = r
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| err("missing 'name'".into()))?;
        if !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                "a name may hold letters, digits, '-' and '_' only".into()
            ));
        }
        if out.iter().any(|s| s.name == name) {
            return Err(err("the name is used twice in this file".into()));
        }
        let cron_expr = r.cron.ok_or_else(|| err("missing 'cron'".into()))?;
        let fields = cron_expr.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(err(format!(
                "cron '{cron_expr}' has {fields} fields; write 6: second minute hour day-of-month month day-of-week (e.g. \"0 0 6 * * *\")"
            )));
        }
        let cron = cron::Schedule::from_str(&cron_expr)
            .map_err(|e| err(format!("cron '{cron_expr}' is not valid: {e}")))?;
        let length = parse_duration(
            r.length
                .as_deref()
                .ok_or_else(|| err("missing 'length'".into()))?,
        )
        .map_err(|m| err(format!("length {m}")))?;
        let outputs = match r.outputs {
            None => known_outputs.to_vec(),
            Some(o) if o.is_empty() => return Err(err("'outputs' is empty".into())),
            Some(o) => o,
        };
        for o in &outputs {
            if !known_outputs.contains(o) {
                return Err(err(format!(
                    "unknown output '{o}' (configured: {})",
                    known_outputs.join(", ")
                )));
            }
        }
        for (what, file) in [("chime", &r.chime), ("outro", &r.outro)] {
            if let Some(c) = file {
                if c.contains('/') || c.contains('\\') || c.starts_with('.') || c.is_empty() {
                    return Err(err(format!(
                        "{what} '{c}' must be a plain file name in the audio directory"
                    )));
                }
            }
        }
        let days = match (r.days.as_deref(), r.holiday.unwrap_or(false)) {
            (None | Some("every"), false) => Days::Every,
            (Some("working"), false) => Days::Working,
            (None | Some("every"), true) => Days::Holidays,
            (Some("working"), true) => {
                return Err(err(
                    "a slot cannot be both days = \"working\" and holiday = true".into(),
                ))
            }
            (Some(other), _) => {
                return Err(err(format!(
                    "days '{other}' must be \"every\" or \"working\""
                )))
            }
        };
        let months = r.months.unwrap_or_default();
        if let Some(m) = months.iter().find(|m| !(1..=12).contains(*m)) {
            return Err(err(format!("month {m} is not 1–12")));
        }
        let mut dates = Vec::new();
        for range in r.dates.unwrap_or_default() {
            let (a, b) = range.split_once("..").unwrap_or((&range, &range));
            let day = |t: &str| {
                NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").map_err(|_| {
                    err(format!(
                        "dates '{range}' must be \"YYYY-MM-DD\" or \"YYYY-MM-DD..YYYY-MM-DD\""
                    ))
                })
            };
            let (a, b) = (day(a)?, day(b)?);
            if b < a {
                return Err(err(format!("dates '{range}' ends before it starts")));
            }
            dates.push((a, b));
        }
        out.push(Slot {
            name,
            file: file.to_string(),
            cron_expr,
            cron,
            length,
            outputs,
            chime: r.chime,
            outro: r.outro,
            days,
            months,
            dates,
        });
    }
    Ok(out)
}

/// One start of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub slot: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Slots with the calendar, quiet hours and zone they run in: everything that decides *when*.
#[derive(Debug, Clone)]
pub struct Timetable {
    pub slots: Vec<Slot>,
    pub calendar: Calendar,
    pub quiet: QuietHours,
    pub tz: Tz,
}

impl Timetable {
    /// A timetable with no holidays and no quiet hours.
    pub fn plain(slots: Vec<Slot>, tz: Tz) -> Self {
        Timetable {
            slots,
            calendar: Calendar::default(),
            quiet: QuietHours::default(),
            tz,
        }
    }

    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// Every occurrence whose start lies in `[from, to)`, on the days its slot runs and outside
    /// quiet hours, ordered by start then slot name (never by file order).
    pub fn occurrences(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for s in &self.slots {
            out.extend(self.slot_occurrences(s, from, to, usize::MAX));
        }
        out.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.slot.cmp(&b.slot)));
        out
    }

    /// At most `limit` occurrences of one slot in `[from, to)`.
    pub fn slot_occurrences(
        &self,
        s: &Slot,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<Occurrence> {
        let tz = self.tz;
        // `after` is exclusive: start one second early so an occurrence exactly at `from` is kept.
        let begin = tz.from_utc_datetime(&(from - chrono::Duration::seconds(1)).naive_utc());
        let len = chrono::Duration::from_std(s.length).unwrap_or(chrono::Duration::zero());
        let mut out = Vec::new();
        for t in s.cron.after(&begin) {
            let start = t.with_timezone(&Utc);
            if start >= to || out.len() >= limit {
                break;
            }
            if start < from || !s.runs_on(t.date_naive(), &self.calendar) {
                continue;
            }
            if self.quiet.overlaps(t.naive_local(), len) {
                continue;
            }
            out.push(Occurrence {
                slot: s.name.clone(),
                start,
                end: start + len,
            });
        }
        out
    }

    /// Slots that would run into quiet hours in the coming year: for each day and each quiet
    /// range, is there a start of the slot in `[quiet start − length, quiet end)` on a day the
    /// slot runs? (One cron look-up per day and range, so a slot every few seconds is checked as
    /// thoroughly as a daily one.) `hokrajai check` reports them as errors.
    pub fn quiet_hour_conflicts(&self, now: DateTime<Utc>) -> Vec<ScheduleError> {
        let mut errors = Vec::new();
        let tz = self.tz;
        let today = now.with_timezone(&tz).date_naive();
        for s in &self.slots {
            let len = chrono::Duration::from_std(s.length).unwrap_or(chrono::Duration::zero());
            let mut hit = None;
            'days: for day in today.iter_days().take(367) {
                for &(qa, qb) in self.quiet.windows() {
                    let q_start = day.and_time(qa);
                    let q_end = if qb > qa {
                        day.and_time(qb)
                    } else {
                        day.and_time(qb) + chrono::Duration::days(1)
                    };
                    let Some(from) = tz.from_local_datetime(&(q_start - len)).earliest() else {
                        continue;
                    };
                    // `after` is exclusive; a start exactly at `q_start − len` ends on the edge.
                    if let Some(t) = s.cron.after(&from).next() {
                        if t.naive_local() < q_end
                            && s.runs_on(t.date_naive(), &self.calendar)
                            && self.quiet.overlaps(t.naive_local(), len)
                        {
                            hit = Some(t);
                            break 'days;
                        }
                    }
                }
            }
            if let Some(t) = hit {
                errors.push(ScheduleError::Slot {
                    file: s.file.clone(),
                    slot: s.name.clone(),
                    message: format!(
                        "overlaps quiet hours ({}) e.g. at {}; only emergencies may air then",
                        self.quiet.ranges().join(", "),
                        t.format("%Y-%m-%d %H:%M")
                    ),
                });
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outs() -> Vec<String> {
        vec!["tower".into(), "pa".into()]
    }

    #[test]
    fn parses_the_example_file() {
        let text = r#"
[[slot]]
name = "morning"
cron = "0 0 6 * * *"
length = "30m"
outputs = ["tower", "pa"]
chime = "chime.wav"
"#;
        let s = parse_slot_file("a.toml", text, &outs()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].length, Duration::from_secs(1800));
        assert_eq!(s[0].chime.as_deref(), Some("chime.wav"));
    }

    #[test]
    fn errors_name_file_and_slot() {
        let table = [
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * *'\nlength='1m'",
                "a.toml: slot 'x': cron",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 99 * * *'\nlength='1m'",
                "a.toml: slot 'x': cron",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * * *'",
                "a.toml: slot 'x': missing 'length'",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * * *'\nlength='1q'",
                "a.toml: slot 'x': length",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * * *'\nlength='1m'\noutputs=['radio']",
                "unknown output 'radio'",
            ),
            (
                "[[slot]]\ncron='0 0 6 * * *'\nlength='1m'",
                "a.toml: slot '#1': missing 'name'",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * * *'\nlength='1m'\nchime='../etc/passwd'",
                "plain file name",
            ),
            (
                "[[slot]]\nname='x'\ncron='0 0 6 * * *'\nlength='1m'\ncolour='red'",
                "a.toml: not a valid slot file",
            ),
            ("[[slot]\n", "a.toml: not a valid slot file"),
        ];
        for (text, want) in table {
            let e = parse_slot_file("a.toml", text, &outs())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text:?}: got {e}");
        }
    }

    #[test]
    fn occurrences_follow_the_zone() {
        let s = parse_slot_file(
            "a.toml",
            "[[slot]]\nname='morning'\ncron='0 0 6 * * *'\nlength='30m'",
            &outs(),
        )
        .unwrap();
        let from = "2026-11-23T00:00:00Z".parse().unwrap();
        let to = "2026-11-25T00:00:00Z".parse().unwrap();
        let tt = Timetable::plain(s, chrono_tz::Asia::Bangkok);
        let occ = tt.occurrences(from, to);
        // 06:00 in Bangkok is 23:00 UTC the day before.
        let starts: Vec<String> = occ.iter().map(|o| o.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            ["2026-11-23T23:00:00+00:00", "2026-11-24T23:00:00+00:00"]
        );
        assert_eq!(occ[0].end.to_rfc3339(), "2026-11-23T23:30:00+00:00");
        // An occurrence exactly at `from` is included.
        let occ = tt.occurrences(occ[0].start, to);
        assert_eq!(occ.len(), 2);
    }
}
