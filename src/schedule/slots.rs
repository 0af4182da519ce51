//! Slot files (`schedules/*.toml`) and the occurrences of their slots in a time range.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

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
        if let Some(c) = &r.chime {
            if c.contains('/') || c.contains('\\') || c.starts_with('.') || c.is_empty() {
                return Err(err(format!(
                    "chime '{c}' must be a plain file name in the audio directory"
                )));
            }
        }
        out.push(Slot {
            name,
            file: file.to_string(),
            cron_expr,
            cron,
            length,
            outputs,
            chime: r.chime,
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

/// Every occurrence of `slots` whose start lies in `[from, to)`, in `tz`, ordered by start then
/// slot name (so the order never depends on file order).
pub fn occurrences(
    slots: &[Slot],
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Occurrence> {
    let mut out = Vec::new();
    // `after` is exclusive: start one second early so an occurrence exactly at `from` is kept.
    let begin = tz.from_utc_datetime(&(from - chrono::Duration::seconds(1)).naive_utc());
    for s in slots {
        let len = chrono::Duration::from_std(s.length).unwrap_or(chrono::Duration::zero());
        for t in s.cron.after(&begin) {
            let start = t.with_timezone(&Utc);
            if start >= to {
                break;
            }
            if start < from {
                continue;
            }
            out.push(Occurrence {
                slot: s.name.clone(),
                start,
                end: start + len,
            });
        }
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.slot.cmp(&b.slot)));
    out
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
        let occ = occurrences(&s, chrono_tz::Asia::Bangkok, from, to);
        // 06:00 in Bangkok is 23:00 UTC the day before.
        let starts: Vec<String> = occ.iter().map(|o| o.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            ["2026-11-23T23:00:00+00:00", "2026-11-24T23:00:00+00:00"]
        );
        assert_eq!(occ[0].end.to_rfc3339(), "2026-11-23T23:30:00+00:00");
        // An occurrence exactly at `from` is included.
        let occ = occurrences(&s, chrono_tz::Asia::Bangkok, occ[0].start, to);
        assert_eq!(occ.len(), 2);
    }
}
