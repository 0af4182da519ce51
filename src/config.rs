//! Configuration in two steps: a serde mirror of the TOML where every key is optional, then one
//! validation into the [`Config`] the rest of the daemon trusts. The embedded default (no file)
//! is what `hokrajai serve` runs with on a fresh machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::playout::{AmpControl, OutputKind, OutputSpec};
use crate::schedule::{
    parse_duration, parse_slot_file, Calendar, PlayRules, QuietHours, ScheduleError, Slot,
    Timetable,
};

/// Slot files shipped in `schedules/`, used when no `schedules_dir` is configured.
pub const EMBEDDED_SCHEDULES: &[(&str, &str)] =
    &[("default.toml", include_str!("../schedules/default.toml"))];

/// Thai public holidays shipped in `schedules/holidays.toml`, used when the schedules dir has no
/// `holidays.toml` of its own.
pub const EMBEDDED_HOLIDAYS: &str = include_str!("../schedules/holidays.toml");

/// The demo slot `--demo` adds: every minute, on the minute.
pub const DEMO_SCHEDULE: (&str, &str) = ("demo.toml", include_str!("../schedules/demo.toml"));

/// Audio shipped in `audio/`, used when no `audio_dir` is configured.
pub const EMBEDDED_AUDIO: &[(&str, &[u8])] = &[
    ("chime.wav", include_bytes!("../audio/chime.wav")),
    ("alert.wav", include_bytes!("../audio/alert.wav")),
    ("demo-th.ogg", include_bytes!("../audio/demo-th.ogg")),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("schedules directory {path}: {message}")]
    SchedulesDir { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    timezone: Option<String>,
    schedules_dir: Option<PathBuf>,
    audio_dir: Option<PathBuf>,
    max_upload_mb: Option<u64>,
    loudness_target_lufs: Option<f64>,
    pause: Option<String>,
    quiet_hours: Option<Vec<String>>,
    min_gap: Option<String>,
    #[serde(default)]
    output: Vec<RawOutput>,
    district: Option<RawDistrict>,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    report: Option<RawReport>,
    cap: Option<RawCap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistrict {
    code: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Option<String>,
    manifest_url: Option<String>,
    keys: Option<Vec<String>>,
    poll: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    interval: Option<String>,
    batch: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    feed_url: Option<String>,
    poll: Option<String>,
    geocodes: Option<Vec<String>>,
    air_test: Option<bool>,
    repeat: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: Option<String>,
    kind: Option<String>,
    device: Option<String>,
    amp_on: Option<Vec<String>>,
    amp_off: Option<Vec<String>>,
    amp_preroll: Option<String>,
}

/// Where slot files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleSource {
    Embedded,
    Dir(PathBuf),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, or None for the embedded default.
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub timezone: Tz,
    pub schedules: ScheduleSource,
    /// None: the embedded audio, written to `<data_dir>/builtin-audio` at start.
    pub audio_dir: Option<PathBuf>,
    pub max_upload_bytes: u64,
    pub loudness_target_lufs: f64,
    pub pause: Duration,
    /// Nothing but an emergency airs inside these local times.
    pub quiet_hours: QuietHours,
    /// Least time between two airings of the same item on one output.
    pub min_gap: Option<Duration>,
    pub outputs: Vec<OutputSpec>,
    /// The district this box serves (issue #3): items and CAP alerts for other districts are
    /// not aired here.
    pub district: Option<District>,
    /// Provincial manifests of approved content to pull.
    pub upstreams: Vec<UpstreamConfig>,
    /// Where airtime is reported.
    pub report: Option<ReportConfig>,
    pub cap: CapConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct District {
    /// The district's code, e.g. the TIS-1099 code "5012".
    pub code: String,
    pub name: Option<String>,
}

/// One `[[upstream]]`: a signed manifest of approved content (see `sync::manifest`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub manifest_url: String,
    /// Ed25519 public keys trusted to sign this manifest.
    pub keys: Vec<ed25519_dalek::VerifyingKey>,
    pub poll: Duration,
}

/// `[report]`: where and how airtime rows are reported. The token never shows in Debug.
#[derive(Clone, PartialEq)]
pub struct ReportConfig {
    pub url: String,
    pub token: String,
    pub interval: Duration,
    pub batch: u32,
}

impl std::fmt::Debug for ReportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportConfig")
            .field("url", &self.url)
            .field("token", &"(hidden)")
            .field("interval", &self.interval)
            .field("batch", &self.batch)
            .finish()
    }
}

/// `[cap]`: CAP 1.2 alerts by feed and by POST /api/v1/cap.
#[derive(Debug, Clone, PartialEq)]
pub struct CapConfig {
    pub feed_url: Option<String>,
    pub poll: Duration,
    /// (valueName, value) pairs this box answers to, e.g. ("TIS1099", "5012").
    pub geocodes: Vec<(String, String)>,
    /// Air messages with status Test or Exercise (never in production).
    pub air_test: bool,
    /// Times an emergency message is repeated after the alert tone.
    pub repeat: u32,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./hokrajai-data";
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 200;
pub const DEFAULT_LOUDNESS_TARGET: f64 = -16.0;

impl Config {
    /// The embedded default: what `hokrajai serve` runs with when given no config file.
    pub fn embedded_default() -> Self {
        match Self::from_toml_str("", None) {
            Ok(c) => c,
            // The empty config is valid by construction; this arm is unreachable in practice,
            // but a panic here would only ever be a programming error caught by tests.
            Err(e) => unreachable!("embedded default config is invalid: {e}"),
        }
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, Some(path))
    }

    /// Validate a config text. Relative paths in a file are taken relative to the file's folder.
    pub fn from_toml_str(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let shown = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(embedded default)".into());
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
        let base = path.and_then(Path::parent).map(Path::to_path_buf);
        let rel = |p: PathBuf| match (&base, p.is_relative()) {
            (Some(b), true) => b.join(p),
            _ => p,
        };

        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(format!(
                "listen '{listen_text}' is not an address like 127.0.0.1:8080"
            ))
        })?;
        let tz_text = raw.timezone.unwrap_or_else(|| "Asia/Bangkok".into());
        let timezone: Tz = tz_text.parse().map_err(|_| {
            invalid(format!(
                "timezone '{tz_text}' is not an IANA zone like Asia/Bangkok"
            ))
        })?;
        let max_mb = raw.max_upload_mb.unwrap_or(DEFAULT_MAX_UPLOAD_MB);
        if max_mb == 0 || max_mb > 4096 {
            return Err(invalid(format!(
                "max_upload_mb {max_mb} must be between 1 and 4096"
            )));
        }
        let loudness_target_lufs = raw.loudness_target_lufs.unwrap_or(DEFAULT_LOUDNESS_TARGET);
        if !(-40.0..=-5.0).contains(&loudness_target_lufs) {
            return Err(invalid(format!(
                "loudness_target_lufs {loudness_target_lufs} must be between -40 and -5"
            )));
        }
        let pause = match raw.pause {
            None => Duration::from_secs(1),
            Some(p) if p.trim() == "0s" || p.trim() == "0" => Duration::ZERO,
            Some(p) => parse_duration(&p).map_err(|m| invalid(format!("pause {m}")))?,
        };

        let quiet_hours =
            QuietHours::parse(&raw.quiet_hours.unwrap_or_default()).map_err(invalid)?;
        let min_gap = raw
            .min_gap
            .map(|g| parse_duration(&g).map_err(|m| invalid(format!("min_gap {m}"))))
            .transpose()?;

        let outputs = if raw.output.is_empty() {
            // The embedded default: the machine's default ALSA device, or a real-time null output.
            ["tower", "pa"]
                .into_iter()
                .map(|name| OutputSpec {
                    name: name.into(),
                    kind: OutputKind::Alsa,
                    device: Some("default".into()),
                    fallback_to_null: true,
                    amp: None,
                })
                .collect()
        } else {
            let mut outs: Vec<OutputSpec> = Vec::new();
            for (i, o) in raw.output.into_iter().enumerate() {
                let name = o
                    .name
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| invalid(format!("output #{} has no name", i + 1)))?;
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(invalid(format!(
                        "output name '{name}' may hold ASCII letters, digits, '-' and '_' only"
                    )));
                }
                if outs.iter().any(|x| x.name == name) {
                    return Err(invalid(format!("output '{name}' is configured twice")));
                }
                let kind = match o.kind.as_deref().unwrap_or("alsa") {
                    "alsa" => OutputKind::Alsa,
                    "null" => OutputKind::Null,
                    "wav" => OutputKind::Wav,
                    k => {
                        return Err(invalid(format!(
                            "output '{name}': kind '{k}' is not one of alsa, null, wav"
                        )))
                    }
                };
                let device = match kind {
                    OutputKind::Wav => Some(
                        rel(PathBuf::from(o.device.ok_or_else(|| {
                            invalid(format!(
                                "output '{name}': a wav output needs 'device' = file path"
                            ))
                        })?))
                        .display()
                        .to_string(),
                    ),
                    OutputKind::Alsa => Some(o.device.unwrap_or_else(|| "default".into())),
                    OutputKind::Null => o.device,
                };
                let amp = match (o.amp_on, o.amp_off) {
                    (None, None) => None,
                    (on, off) => {
                        let on = on.unwrap_or_default();
                        let off = off.unwrap_or_default();
                        if on.is_empty() && off.is_empty() {
                            None
                        } else {
                            if on.first().is_some_and(|c| c.trim().is_empty())
                                || off.first().is_some_and(|c| c.trim().is_empty())
                            {
                                return Err(invalid(format!(
                                    "output '{name}': amp_on/amp_off must name a program first, e.g. [\"/usr/local/bin/amp\", \"on\"]"
                                )));
                            }
                            let preroll = match o.amp_preroll.as_deref() {
                                None => Duration::from_secs(3),
                                Some(p) => parse_duration(p).map_err(|m| {
                                    invalid(format!("output '{name}': amp_preroll {m}"))
                                })?,
                            };
                            if preroll > Duration::from_secs(120) {
                                return Err(invalid(format!(
                                    "output '{name}': amp_preroll may be at most 2m"
                                )));
                            }
                            Some(AmpControl { on, off, preroll })
                        }
                    }
                };
                outs.push(OutputSpec {
                    name,
                    kind,
                    device,
                    fallback_to_null: false,
                    amp,
                });
            }
            outs
        };

        let district = match raw.district {
            None => None,
            Some(d) => {
                let code = d
                    .code
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "[district] needs code = \"...\" (e.g. the TIS-1099 code \"5012\")"
                                .into(),
                        )
                    })?;
                Some(District { code, name: d.name })
            }
        };
        let http_url = |what: &str, u: Option<String>| -> Result<String, ConfigError> {
            let u = u.map(|u| u.trim().to_string()).unwrap_or_default();
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(u)
            } else {
                Err(invalid(format!(
                    "{what} must be an http:// or https:// URL, not '{u}'"
                )))
            }
        };
        let mut upstreams: Vec<UpstreamConfig> = Vec::new();
        for (i, u) in raw.upstream.into_iter().enumerate() {
            let name = u.name.unwrap_or_else(|| "province".into());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(format!(
                    "upstream #{}: name '{name}' may hold ASCII letters, digits, '-' and '_' only",
                    i + 1
                )));
            }
            if upstreams.iter().any(|x| x.name == name) {
                return Err(invalid(format!("upstream '{name}' is configured twice")));
            }
            let manifest_url =
                http_url(&format!("upstream '{name}': manifest_url"), u.manifest_url)?;
            let keys = u
                .keys
                .unwrap_or_default()
                .iter()
                .map(|k| {
                    // 64 hex digits, or a file holding them (relative to this config file).
                    let arg = if k.trim().len() == 64 {
                        k.clone()
                    } else {
                        rel(PathBuf::from(k)).display().to_string()
                    };
                    crate::audit::key::parse_public_key(&arg)
                        .map_err(|e| invalid(format!("upstream '{name}': {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() {
                return Err(invalid(format!(
                    "upstream '{name}' needs keys = [\"<the province's public key>\"]: nothing unsigned is ever aired"
                )));
            }
            let poll = match u.poll {
                None => Duration::from_secs(300),
                Some(p) => parse_duration(&p)
                    .map_err(|m| invalid(format!("upstream '{name}': poll {m}")))?,
            };
            if poll < Duration::from_secs(1) {
                return Err(invalid(format!(
                    "upstream '{name}': poll must be at least 1s"
                )));
            }
            upstreams.push(UpstreamConfig {
                name,
                manifest_url,
                keys,
                poll,
            });
        }
        let report = match raw.report {
            None => None,
            Some(r) => {
                let url = http_url("[report] url", r.url)?;
                let token = match (r.token, r.token_file) {
                    (Some(t), None) => t,
                    (None, Some(f)) => {
                        let f = rel(f);
                        std::fs::read_to_string(&f).map_err(|e| {
                            invalid(format!("[report] token_file {}: {e}", f.display()))
                        })?
                    }
                    _ => {
                        return Err(invalid(
                            "[report] needs exactly one of token or token_file (the box's token on the province)".into(),
                        ))
                    }
                };
                let token = token.trim().to_string();
                if token.is_empty() {
                    return Err(invalid("[report] token is empty".into()));
                }
                let interval = match r.interval {
                    None => Duration::from_secs(60),
                    Some(p) => {
                        parse_duration(&p).map_err(|m| invalid(format!("[report] interval {m}")))?
                    }
                };
                let batch = r.batch.unwrap_or(500);
                if !(1..=5000).contains(&batch) {
                    return Err(invalid(format!(
                        "[report] batch {batch} must be between 1 and 5000"
                    )));
                }
                Some(ReportConfig {
                    url,
                    token,
                    interval,
                    batch,
                })
            }
        };
        let cap = {
            let c = raw.cap;
            let (feed_url, poll, geocodes, air_test, repeat) = match c {
                None => (None, None, None, None, None),
                Some(c) => (c.feed_url, c.poll, c.geocodes, c.air_test, c.repeat),
            };
            let feed_url = feed_url
                .map(|u| http_url("[cap] feed_url", Some(u)))
                .transpose()?;
            let poll = match poll {
                None => Duration::from_secs(60),
                Some(p) => parse_duration(&p).map_err(|m| invalid(format!("[cap] poll {m}")))?,
            };
            let mut codes = Vec::new();
            for g in geocodes.unwrap_or_default() {
                let Some((n, v)) = g
                    .split_once(':')
                    .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                else {
                    return Err(invalid(format!(
                        "[cap] geocodes: '{g}' must be valueName:value, e.g. \"TIS1099:5012\""
                    )));
                };
                codes.push((n.trim().to_string(), v.trim().to_string()));
            }
            if codes.is_empty() {
                if let Some(d) = &district {
                    codes.push(("TIS1099".to_string(), d.code.clone()));
                }
            }
            if feed_url.is_some() && codes.is_empty() {
                return Err(invalid(
                    "[cap] feed_url is set but this box has no area to match alerts against: set [district] code, or [cap] geocodes = [\"TIS1099:5012\"]".into(),
                ));
            }
            let repeat = repeat.unwrap_or(2);
            if !(1..=10).contains(&repeat) {
                return Err(invalid(format!(
                    "[cap] repeat {repeat} must be between 1 and 10"
                )));
            }
            CapConfig {
                feed_url,
                poll,
                geocodes: codes,
                air_test: air_test.unwrap_or(false),
                repeat,
            }
        };

        Ok(Config {
            source: path.map(Path::to_path_buf),
            listen,
            data_dir: rel(raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))),
            timezone,
            schedules: raw
                .schedules_dir
                .map(|d| ScheduleSource::Dir(rel(d)))
                .unwrap_or(ScheduleSource::Embedded),
            audio_dir: raw.audio_dir.map(rel),
            max_upload_bytes: max_mb * 1024 * 1024,
            loudness_target_lufs,
            pause,
            quiet_hours,
            min_gap,
            outputs,
            district,
            upstreams,
            report,
            cap,
        })
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// The slot files as (file name, text), sorted by name.
    pub fn read_slot_files(&self) -> Result<Vec<(String, String)>, ConfigError> {
        match &self.schedules {
            ScheduleSource::Embedded => Ok(EMBEDDED_SCHEDULES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect()),
            ScheduleSource::Dir(dir) => {
                let err = |message: String| ConfigError::SchedulesDir {
                    path: dir.clone(),
                    message,
                };
                let mut files = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(|e| err(e.to_string()))? {
                    let p = entry.map_err(|e| err(e.to_string()))?.path();
                    let is_slot_file = p.extension().is_some_and(|e| e == "toml")
                        && p.file_name().is_some_and(|n| n != "holidays.toml");
                    if is_slot_file {
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| err(format!("{}: {e}", p.display())))?;
                        files.push((p.display().to_string(), text));
                    }
                }
                files.sort();
                Ok(files)
            }
        }
    }

    /// Parse every slot file; slot names must be unique across files.
    pub fn load_slots(&self, extra: &[(String, String)]) -> Result<Vec<Slot>, ConfigError> {
        let outputs = self.output_names();
        let mut all: Vec<Slot> = Vec::new();
        for (file, text) in self.read_slot_files()?.iter().chain(extra) {
            for s in parse_slot_file(file, text, &outputs)? {
                if let Some(prev) = all.iter().find(|p| p.name == s.name) {
                    return Err(ScheduleError::Slot {
                        file: file.clone(),
                        slot: s.name.clone(),
                        message: format!("the name is already used in {}", prev.file),
                    }
                    .into());
                }
                all.push(s);
            }
        }
        Ok(all)
    }

    /// The holidays: `holidays.toml` in the schedules dir if there is one, else the shipped file.
    pub fn load_calendar(&self) -> Result<Calendar, ConfigError> {
        if let ScheduleSource::Dir(dir) = &self.schedules {
            let p = dir.join("holidays.toml");
            if p.is_file() {
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::SchedulesDir {
                    path: dir.clone(),
                    message: format!("{}: {e}", p.display()),
                })?;
                return Ok(Calendar::parse(&p.display().to_string(), &text)?);
            }
        }
        Ok(Calendar::parse(
            "holidays.toml (shipped)",
            EMBEDDED_HOLIDAYS,
        )?)
    }

    /// Slots, holidays, quiet hours and zone, validated together: a slot that would run into
    /// quiet hours is an error.
    pub fn load_timetable(
        &self,
        extra: &[(String, String)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Timetable, ConfigError> {
        let tt = Timetable {
            slots: self.load_slots(extra)?,
            calendar: self.load_calendar()?,
            quiet: self.quiet_hours.clone(),
            tz: self.timezone,
        };
        if let Some(e) = tt.quiet_hour_conflicts(now).into_iter().next() {
            return Err(e.into());
        }
        Ok(tt)
    }

    /// How items are laid out in a slot, given the measured length of each chime/outro file.
    pub fn play_rules(&self, chime_ms: std::collections::BTreeMap<String, u64>) -> PlayRules {
        PlayRules {
            chime_ms,
            pause: self.pause,
            min_gap: self.min_gap,
        }
    }

    /// The folder chimes are read from.
    pub fn audio_dir(&self) -> PathBuf {
        self.audio_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("builtin-audio"))
    }

    /// Write the embedded audio into `<data_dir>/builtin-audio` when no audio dir is configured.
    pub fn install_builtin_audio(&self) -> std::io::Result<()> {
        if self.audio_dir.is_some() {
            return Ok(());
        }
        let dir = self.audio_dir();
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in EMBEDDED_AUDIO {
            let p = dir.join(name);
            let same = std::fs::read(&p).is_ok_and(|b| b == *bytes);
            if !same {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &p)?;
            }
        }
        Ok(())
    }

    /// Chime file names used by slots that do not exist in the audio dir.
    pub fn missing_chimes(&self, slots: &[Slot]) -> BTreeMap<String, String> {
        let dir = self.audio_dir();
        let mut missing = BTreeMap::new();
        for s in slots {
            for c in s.chime.iter().chain(s.outro.iter()) {
                let present = dir.join(c).is_file()
                    || (self.audio_dir.is_none() && EMBEDDED_AUDIO.iter().any(|(n, _)| n == c));
                if !present {
                    missing.insert(s.name.clone(), c.clone());
                }
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.timezone, chrono_tz::Asia::Bangkok);
        assert_eq!(c.output_names(), ["tower", "pa"]);
        assert!(c.outputs.iter().all(|o| o.fallback_to_null));
        assert_eq!(c.max_upload_bytes, 200 * 1024 * 1024);
        let slots = c.load_slots(&[]).unwrap();
        assert!(slots.iter().any(|s| s.name == "morning"));
        assert!(c.missing_chimes(&slots).is_empty());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let table = [
            ("listen = 'nowhere'", "listen 'nowhere'"),
            ("timezone = 'Mars/Olympus'", "timezone 'Mars/Olympus'"),
            ("max_upload_mb = 0", "max_upload_mb 0"),
            ("colour = 'red'", "unknown field"),
            ("[[output]]\nname='tower'\nkind='radio'", "kind 'radio'"),
            ("[[output]]\nname='tower'\nkind='wav'", "needs 'device'"),
            (
                "[[output]]\nname='a'\n[[output]]\nname='a'",
                "configured twice",
            ),
            ("[[output]]\nname='../x'", "output name"),
            ("quiet_hours = ['9pm-5am']", "quiet hours '9pm-5am'"),
            ("min_gap = 'often'", "min_gap"),
            ("[district]\nname = 'x'", "[district] needs code"),
            (
                "[[upstream]]\nmanifest_url = 'ftp://p/m.json'\nkeys = []",
                "http:// or https://",
            ),
            (
                "[[upstream]]\nmanifest_url = 'https://p/m.json'",
                "needs keys",
            ),
            (
                "[[upstream]]\nmanifest_url = 'https://p/m.json'\nkeys = ['abc']",
                "not an Ed25519 public key",
            ),
            (
                "[report]\nurl = 'https://p/api/v1/reports'",
                "exactly one of token or token_file",
            ),
            (
                "[report]\nurl = 'https://p/r'\ntoken = 't'\nbatch = 0",
                "batch 0",
            ),
            ("[cap]\nfeed_url = 'https://p/cap.atom'", "no area to match"),
            ("[cap]\ngeocodes = ['5012']", "valueName:value"),
        ];
        for (text, want) in table {
            let e = Config::from_toml_str(text, Some(Path::new("/etc/h.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("/etc/h.toml") && e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn the_provincial_link_is_configured_with_keys_and_a_hidden_token() {
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let c = Config::from_toml_str(
            &format!(
                "[district]\ncode = '5012'\n[[upstream]]\nmanifest_url = 'https://p/m.json'\nkeys = ['{key}']\npoll = '10m'\n\
                 [report]\nurl = 'https://p/api/v1/reports'\ntoken = 'hkr_secret'\n[cap]\nfeed_url = 'https://p/cap.atom'"
            ),
            None,
        )
        .unwrap();
        assert_eq!(c.upstreams[0].name, "province");
        assert_eq!(c.upstreams[0].poll, Duration::from_secs(600));
        assert_eq!(
            c.cap.geocodes,
            [("TIS1099".to_string(), "5012".to_string())]
        );
        let report = c.report.as_ref().unwrap();
        assert_eq!(
            (report.interval, report.batch),
            (Duration::from_secs(60), 500)
        );
        assert!(
            !format!("{c:?}").contains("hkr_secret"),
            "the token never shows"
        );
        assert!(Config::embedded_default().upstreams.is_empty());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = Config::from_toml_str(
            "data_dir = 'data'\n[[output]]\nname='tower'\nkind='wav'\ndevice='t.wav'",
            Some(Path::new("/srv/h/config.toml")),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/h/data"));
        assert_eq!(c.outputs[0].device.as_deref(), Some("/srv/h/t.wav"));
    }
}
