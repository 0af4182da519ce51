//! CAP 1.2 alerts: parse, validate, match the district, decide what to air.
//!
//! Pure: bytes and `now` in, a [`CapDecision`] out; no IO, no clock, no tokio. The caller fetches
//! the message (and bounds its size), logs every decision, and hands an [`CapDecision::Air`] to
//! the runner: [`CapLevel::Emergency`] preempts like `POST /api/v1/emergency`, [`CapLevel::High`]
//! goes into the normal slot queue at high priority.
//!
//! Why not the `oasiscap` crate (0.2.0, the only CAP crate, last released 2022)? It parses CAP
//! 1.2, but (1) it refuses the whole alert when `<uri>` is a relative name for the content of
//! `<derefUri>`, which CAP 1.2 §3.2.3 allows and which is exactly how a province embeds the
//! spoken message; (2) its 1.2 `<ceiling>` is bound to the 1.1 namespace, so it is silently
//! dropped; (3) through `xml_serde` it pulls a logger into the build (`pretty_env_logger` 0.4,
//! `env_logger` 0.7, the unmaintained `atty`). So: quick-xml checks well-formedness and the
//! root's namespace, serde reads a loose mirror, and [`parse`] validates CAP 1.2's required
//! elements (§3.2) itself, naming the first one that is missing or wrong.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use serde::Deserialize;
use sha1::{Digest as _, Sha1};

/// The XML namespace of CAP 1.2; a message in any other (1.0, 1.1, none) is refused.
pub const CAP_1_2_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// The largest message [`parse`] reads: room for a minute or two of embedded audio (base64 adds
/// a third). Callers should stop the download there too.
pub const MAX_CAP_BYTES: usize = 16 * 1024 * 1024;

/// What this box airs, from its config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapPolicy {
    /// `(valueName, value)` of the areas this box serves, e.g. `("TIS1099", "5012")`. An alert's
    /// geocode matches one with the same valueName when the values are equal or one is a prefix
    /// of the other: an alert for province "50" covers district "5012", and one for sub-district
    /// "501205" is inside it.
    pub geocodes: Vec<(String, String)>,
    /// Air `Test` and `Exercise` messages (otherwise they are only logged).
    pub air_test: bool,
    /// Preferred `<info>` languages, best first, e.g. `["th", "th-TH", "en"]`.
    pub language_prefs: Vec<String>,
}

/// CAP `<status>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapStatus {
    Actual,
    Exercise,
    System,
    Test,
    Draft,
}

/// CAP `<msgType>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapMsgType {
    Alert,
    Update,
    Cancel,
    Ack,
    Error,
}

/// CAP `<scope>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    Public,
    Restricted,
    Private,
}

/// CAP `<urgency>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapUrgency {
    Immediate,
    Expected,
    Future,
    Past,
    Unknown,
}

/// CAP `<severity>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSeverity {
    Extreme,
    Severe,
    Moderate,
    Minor,
    Unknown,
}

/// CAP `<certainty>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapCertainty {
    Observed,
    Likely,
    Possible,
    Unlikely,
    Unknown,
}

/// How an aired alert enters playout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapLevel {
    /// Severe or Extreme, and Immediate or Expected: preempts whatever plays.
    Emergency,
    /// Any other aired alert: the normal slot queue, at high priority.
    High,
}

/// One earlier message named in `<references>` ("sender,identifier,sent").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapRef {
    pub sender: String,
    pub identifier: String,
    pub sent: DateTime<Utc>,
}

/// A `<resource>` of an `<info>` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapResource {
    /// `<resourceDesc>`.
    pub description: String,
    /// `<mimeType>`, as sent.
    pub mime_type: String,
    /// `<size>` in bytes, as the sender claims it.
    pub size: Option<u64>,
    /// `<uri>` as sent: absolute, or a relative name for the embedded content.
    pub uri: Option<String>,
    /// `<digest>`: SHA-1 (CAP 1.2 fixes the algorithm), 40 lowercase hex digits.
    pub digest_sha1: Option<String>,
    /// `<derefUri>`, base64-decoded: the content itself, embedded in the message.
    pub deref: Option<Vec<u8>>,
}

/// A validated `<area>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapArea {
    /// `<areaDesc>`.
    pub description: String,
    /// `<geocode>` pairs, `(valueName, value)`.
    pub geocodes: Vec<(String, String)>,
}

/// A validated `<info>` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapInfo {
    /// `<language>`; CAP's default "en-US" when absent.
    pub language: String,
    /// `<category>` values (at least one, each one of CAP's twelve).
    pub categories: Vec<String>,
    pub event: String,
    pub urgency: CapUrgency,
    pub severity: CapSeverity,
    pub certainty: CapCertainty,
    pub effective: Option<DateTime<Utc>>,
    pub onset: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub sender_name: Option<String>,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub resources: Vec<CapResource>,
    pub areas: Vec<CapArea>,
}

/// A CAP 1.2 message that [`parse`] found complete and well-typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapAlert {
    pub identifier: String,
    pub sender: String,
    pub sent: DateTime<Utc>,
    pub status: CapStatus,
    pub msg_type: CapMsgType,
    pub scope: CapScope,
    pub note: Option<String>,
    /// `<references>`, in order.
    pub references: Vec<CapRef>,
    pub infos: Vec<CapInfo>,
}

/// An alert to put on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapAir {
    pub identifier: String,
    pub sender: String,
    pub sent: DateTime<Utc>,
    /// `Actual`, or `Test`/`Exercise` when the policy airs those (say so on air and in the log).
    pub status: CapStatus,
    /// `<headline>` of the chosen info block, or its `<event>` when it has none.
    pub headline: String,
    /// Empty when the block has none.
    pub description: String,
    /// Empty when the block has none.
    pub instruction: String,
    pub event: String,
    pub level: CapLevel,
    /// Stop airing it after this (the caller's repeats too).
    pub expires: Option<DateTime<Utc>>,
    /// For an Update: the messages it replaces (stop or withdraw them). Empty for an Alert.
    pub supersedes: Vec<CapRef>,
    /// The first `audio/*` resource of the chosen info block. Check its digest before airing it.
    pub resource: Option<CapResource>,
    /// The chosen block's `<language>`.
    pub language: String,
}

/// What to do with one message.
// One decision per message, moved to the caller and dropped: boxing the Air variant would only
// make the caller's matches clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapDecision {
    /// Log it and do nothing else.
    Ignore {
        identifier: String,
        reason: String,
    },
    Air(CapAir),
    /// Stop and withdraw these earlier messages (the caller ignores ones it never aired).
    Cancel {
        identifier: String,
        references: Vec<CapRef>,
    },
}

/// Why a message could not be read, or a resource does not match its digest.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("the CAP message is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("the CAP message is not UTF-8 (bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("the CAP message is not well-formed XML (at byte {position}): {detail}")]
    Xml { position: u64, detail: String },
    #[error(
        "the root element is <{element}> in namespace '{namespace}', not <alert> in CAP 1.2's \
         '{CAP_1_2_NS}'"
    )]
    WrongNamespace { element: String, namespace: String },
    #[error("the CAP message does not have CAP 1.2's structure: {0}")]
    Shape(String),
    #[error("the CAP message lacks the required <{0}>")]
    Missing(String),
    #[error("in the CAP message, <{element}> is '{value}': {reason}")]
    Invalid {
        element: String,
        value: String,
        reason: String,
    },
    #[error(
        "the resource does not match its CAP digest: SHA-1 {actual}, the message says {expected}"
    )]
    DigestMismatch { expected: String, actual: String },
}

/// Reads and validates one CAP 1.2 message.
///
/// # Errors
/// [`CapError`] naming the first problem: size, encoding, XML, namespace, a missing required
/// element (as a path, e.g. `alert/info[2]/urgency`) or a value CAP 1.2 does not allow.
pub fn parse(bytes: &[u8]) -> Result<CapAlert, CapError> {
    if bytes.len() > MAX_CAP_BYTES {
        return Err(CapError::TooLarge {
            size: bytes.len(),
            max: MAX_CAP_BYTES,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| CapError::NotUtf8(e.valid_up_to()))?;
    check_xml(text)?;
    let raw: RawAlert =
        quick_xml::de::from_str(text).map_err(|e| CapError::Shape(e.to_string()))?;
    validate(raw)
}

/// [`parse`], then [`decide`].
///
/// # Errors
/// As [`parse`].
pub fn evaluate(
    bytes: &[u8],
    policy: &CapPolicy,
    now: DateTime<Utc>,
) -> Result<CapDecision, CapError> {
    Ok(decide(&parse(bytes)?, policy, now))
}

/// Decides what this box does with a valid message at `now`.
///
/// In order: `System`/`Draft` are never aired, `Test`/`Exercise` only with `air_test`; `Ack` and
/// `Error` are ignored; a message whose info blocks name none of the policy's areas is ignored
/// (a Cancel without info blocks applies everywhere); a Cancel cancels its references; an
/// Alert or Update airs its first live (not expired) matching info block in the best language.
pub fn decide(alert: &CapAlert, policy: &CapPolicy, now: DateTime<Utc>) -> CapDecision {
    let ignore = |reason: String| CapDecision::Ignore {
        identifier: alert.identifier.clone(),
        reason,
    };
    match alert.status {
        CapStatus::Actual => {}
        CapStatus::Test | CapStatus::Exercise if policy.air_test => {}
        CapStatus::Test | CapStatus::Exercise => {
            return ignore(format!(
                "status {:?}: logged, not aired (air_test is off)",
                alert.status
            ))
        }
        CapStatus::System | CapStatus::Draft => {
            return ignore(format!("status {:?}: never aired", alert.status))
        }
    }
    if matches!(alert.msg_type, CapMsgType::Ack | CapMsgType::Error) {
        return ignore(format!("msgType {:?}: nothing to air", alert.msg_type));
    }

    let ours: Vec<&CapInfo> = alert
        .infos
        .iter()
        .filter(|info| info_matches(info, &policy.geocodes))
        .collect();
    let cancel_everywhere = alert.msg_type == CapMsgType::Cancel && alert.infos.is_empty();
    if ours.is_empty() && !cancel_everywhere {
        if alert.infos.is_empty() {
            return ignore("no <info> block: nothing to air".to_owned());
        }
        return ignore(format!(
            "not for this district (areas: {})",
            describe_areas(&alert.infos)
        ));
    }

    if alert.msg_type == CapMsgType::Cancel {
        if alert.references.is_empty() {
            return ignore("Cancel without <references>: nothing to cancel".to_owned());
        }
        return CapDecision::Cancel {
            identifier: alert.identifier.clone(),
            references: alert.references.clone(),
        };
    }

    let live: Vec<&CapInfo> = ours
        .iter()
        .copied()
        .filter(|info| info.expires.is_none_or(|expires| expires > now))
        .collect();
    let Some(info) = choose_language(&live, &policy.language_prefs) else {
        let last = ours.iter().filter_map(|info| info.expires).max();
        return ignore(match last {
            Some(at) => format!("expired at {}", at.to_rfc3339()),
            None => "expired".to_owned(),
        });
    };

    CapDecision::Air(CapAir {
        identifier: alert.identifier.clone(),
        sender: alert.sender.clone(),
        sent: alert.sent,
        status: alert.status,
        headline: info.headline.clone().unwrap_or_else(|| info.event.clone()),
        description: info.description.clone().unwrap_or_default(),
        instruction: info.instruction.clone().unwrap_or_default(),
        event: info.event.clone(),
        level: level(info.severity, info.urgency),
        expires: info.expires,
        supersedes: if alert.msg_type == CapMsgType::Update {
            alert.references.clone()
        } else {
            Vec::new()
        },
        resource: info
            .resources
            .iter()
            .find(|r| {
                r.mime_type
                    .get(..6)
                    .is_some_and(|p| p.eq_ignore_ascii_case("audio/"))
            })
            .cloned(),
        language: info.language.clone(),
    })
}

impl CapResource {
    /// Checks `bytes` (the embedded `deref`, or what was fetched from `uri`) against the
    /// message's SHA-1 `<digest>`. A resource without a digest passes: CAP makes it optional.
    ///
    /// # Errors
    /// [`CapError::DigestMismatch`] when the bytes are not the ones the sender hashed.
    pub fn check_digest(&self, bytes: &[u8]) -> Result<(), CapError> {
        let Some(expected) = &self.digest_sha1 else {
            return Ok(());
        };
        let actual = hex::encode(Sha1::digest(bytes));
        if actual.eq_ignore_ascii_case(expected) {
            Ok(())
        } else {
            Err(CapError::DigestMismatch {
                expected: expected.clone(),
                actual,
            })
        }
    }
}

impl CapAir {
    /// One line for logs and the status page: "headline — description" (only the headline when
    /// there is no description), line breaks folded into spaces.
    pub fn log_text(&self) -> String {
        let headline = one_line(&self.headline);
        let description = one_line(&self.description);
        if description.is_empty() {
            headline
        } else {
            format!("{headline} — {description}")
        }
    }
}

/// Emergency for (Extreme or Severe) and (Immediate or Expected); High otherwise.
pub fn level(severity: CapSeverity, urgency: CapUrgency) -> CapLevel {
    let grave = matches!(severity, CapSeverity::Extreme | CapSeverity::Severe);
    let soon = matches!(urgency, CapUrgency::Immediate | CapUrgency::Expected);
    if grave && soon {
        CapLevel::Emergency
    } else {
        CapLevel::High
    }
}

/// Whether one of the alert's geocodes names one of ours: same valueName, and one value equal to
/// or a prefix of the other (TIS 1099 codes nest: province "50", district "5012", sub-district
/// "501205"). Empty values never match.
pub fn geocode_matches(ours: &[(String, String)], alert: &[(String, String)]) -> bool {
    alert.iter().any(|(name, value)| {
        let value = value.trim();
        !value.is_empty()
            && ours.iter().any(|(our_name, our_value)| {
                let our_value = our_value.trim();
                our_name.trim() == name.trim()
                    && !our_value.is_empty()
                    && (our_value.starts_with(value) || value.starts_with(our_value))
            })
    })
}

fn info_matches(info: &CapInfo, ours: &[(String, String)]) -> bool {
    info.areas
        .iter()
        .any(|area| geocode_matches(ours, &area.geocodes))
}

/// The first block in the first preferred language with one (exact tag first, then the same
/// primary language: "th" takes "th-TH" and the other way round), else the first block. Within
/// one language the first block wins: CAP lets later ones add to it, not override it.
fn choose_language<'a>(infos: &[&'a CapInfo], prefs: &[String]) -> Option<&'a CapInfo> {
    let primary = |tag: &str| tag.split('-').next().unwrap_or("").to_ascii_lowercase();
    prefs
        .iter()
        .find_map(|pref| {
            infos
                .iter()
                .find(|info| info.language.eq_ignore_ascii_case(pref.trim()))
        })
        .or_else(|| {
            prefs.iter().find_map(|pref| {
                infos
                    .iter()
                    .find(|info| primary(&info.language) == primary(pref.trim()))
            })
        })
        .or(infos.first())
        .copied()
}

fn describe_areas(infos: &[CapInfo]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for area in infos.iter().flat_map(|info| &info.areas) {
        let codes: Vec<String> = area
            .geocodes
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let part = if codes.is_empty() {
            area.description.clone()
        } else {
            format!("{} [{}]", area.description, codes.join(" "))
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join("; ")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the whole document once: well-formed, one root, and that root is CAP 1.2's `<alert>`.
/// serde (below) matches local names only, so the namespace is checked here.
fn check_xml(text: &str) -> Result<(), CapError> {
    let mut reader = NsReader::from_str(text);
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let position = reader.buffer_position();
        let xml_error = |detail: String| CapError::Xml { position, detail };
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| xml_error(e.to_string()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if depth == 0 && seen_root => {
                return Err(xml_error("a second root element".to_owned()));
            }
            Event::Start(ref start) | Event::Empty(ref start) if depth == 0 => {
                seen_root = true;
                let local = start.local_name().as_ref().to_owned();
                let namespace = match ns {
                    ResolveResult::Bound(ns) => ns.as_ref().to_owned(),
                    ResolveResult::Unbound => String::new(),
                    ResolveResult::Unknown(prefix) => {
                        return Err(xml_error(format!("undeclared namespace prefix '{prefix}'")))
                    }
                };
                if local != "alert" || namespace != CAP_1_2_NS {
                    return Err(CapError::WrongNamespace {
                        element: local,
                        namespace,
                    });
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::DocType(_) => {
                return Err(xml_error("a DOCTYPE (CAP has none)".to_owned()));
            }
            Event::Text(ref t) if depth == 0 && !t.trim().is_empty() => {
                return Err(xml_error("text outside the root element".to_owned()));
            }
            Event::Eof if !seen_root => return Err(xml_error("no root element".to_owned())),
            Event::Eof if depth > 0 => {
                return Err(xml_error("unclosed elements at the end".to_owned()))
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

// The loose mirror serde reads: every element optional, so that `validate` can say which one is
// missing and where, instead of serde's "missing field".

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    identifier: Option<String>,
    sender: Option<String>,
    sent: Option<String>,
    status: Option<String>,
    msg_type: Option<String>,
    scope: Option<String>,
    note: Option<String>,
    references: Option<String>,
    #[serde(default)]
    info: Vec<RawInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    language: Option<String>,
    #[serde(default)]
    category: Vec<String>,
    event: Option<String>,
    urgency: Option<String>,
    severity: Option<String>,
    certainty: Option<String>,
    effective: Option<String>,
    onset: Option<String>,
    expires: Option<String>,
    sender_name: Option<String>,
    headline: Option<String>,
    description: Option<String>,
    instruction: Option<String>,
    #[serde(default)]
    resource: Vec<RawResource>,
    #[serde(default)]
    area: Vec<RawArea>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResource {
    resource_desc: Option<String>,
    mime_type: Option<String>,
    size: Option<String>,
    uri: Option<String>,
    deref_uri: Option<String>,
    digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArea {
    area_desc: Option<String>,
    #[serde(default)]
    geocode: Vec<RawValuePair>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawValuePair {
    value_name: Option<String>,
    value: Option<String>,
}

/// Trimmed, and `None` when empty: `<headline/>` says nothing.
fn text(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn required(value: Option<String>, path: &str) -> Result<String, CapError> {
    text(value).ok_or_else(|| CapError::Missing(path.to_owned()))
}

fn invalid(path: &str, value: &str, reason: impl Into<String>) -> CapError {
    CapError::Invalid {
        element: path.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// One of CAP's fixed code values; exact case, as the schema says.
fn code<T: Copy>(value: Option<String>, path: &str, table: &[(&str, T)]) -> Result<T, CapError> {
    let value = required(value, path)?;
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, code)| *code)
        .ok_or_else(|| {
            let allowed: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            invalid(
                path,
                &value,
                format!("CAP 1.2 allows {}", allowed.join(", ")),
            )
        })
}

fn datetime(value: &str, path: &str) -> Result<DateTime<Utc>, CapError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(
                path,
                value,
                format!("not a date-time like 2026-08-14T06:30:00+07:00 ({e})"),
            )
        })
}

fn optional_datetime(value: Option<String>, path: &str) -> Result<Option<DateTime<Utc>>, CapError> {
    text(value).map(|v| datetime(&v, path)).transpose()
}

/// identifier and sender: CAP 1.2 forbids spaces, commas and the XML-restricted `<` and `&`
/// (references are built from them with commas and spaces).
fn id(value: Option<String>, path: &str) -> Result<String, CapError> {
    let value = required(value, path)?;
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        return Err(invalid(
            path,
            &value,
            "CAP 1.2 forbids spaces, commas, '<' and '&' in it",
        ));
    }
    Ok(value)
}

/// `<references>`: whitespace-separated "sender,identifier,sent" triples.
fn references(value: Option<String>) -> Result<Vec<CapRef>, CapError> {
    const PATH: &str = "alert/references";
    let Some(value) = text(value) else {
        return Ok(Vec::new());
    };
    value
        .split_whitespace()
        .map(|triple| {
            let parts: Vec<&str> = triple.split(',').collect();
            match parts.as_slice() {
                [sender, identifier, sent] if !sender.is_empty() && !identifier.is_empty() => {
                    Ok(CapRef {
                        sender: (*sender).to_owned(),
                        identifier: (*identifier).to_owned(),
                        sent: datetime(sent, PATH)?,
                    })
                }
                _ => Err(invalid(PATH, triple, "expected sender,identifier,sent")),
            }
        })
        .collect()
}

const CATEGORIES: [&str; 12] = [
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];

fn validate(raw: RawAlert) -> Result<CapAlert, CapError> {
    let identifier = id(raw.identifier, "alert/identifier")?;
    let sender = id(raw.sender, "alert/sender")?;
    let sent = datetime(&required(raw.sent, "alert/sent")?, "alert/sent")?;
    let status = code(
        raw.status,
        "alert/status",
        &[
            ("Actual", CapStatus::Actual),
            ("Exercise", CapStatus::Exercise),
            ("System", CapStatus::System),
            ("Test", CapStatus::Test),
            ("Draft", CapStatus::Draft),
        ],
    )?;
    let msg_type = code(
        raw.msg_type,
        "alert/msgType",
        &[
            ("Alert", CapMsgType::Alert),
            ("Update", CapMsgType::Update),
            ("Cancel", CapMsgType::Cancel),
            ("Ack", CapMsgType::Ack),
            ("Error", CapMsgType::Error),
        ],
    )?;
    let scope = code(
        raw.scope,
        "alert/scope",
        &[
            ("Public", CapScope::Public),
            ("Restricted", CapScope::Restricted),
            ("Private", CapScope::Private),
        ],
    )?;
    let references = references(raw.references)?;
    let infos = raw
        .info
        .into_iter()
        .enumerate()
        .map(|(i, info)| validate_info(info, &format!("alert/info[{}]", i + 1)))
        .collect::<Result<_, _>>()?;
    Ok(CapAlert {
        identifier,
        sender,
        sent,
        status,
        msg_type,
        scope,
        note: text(raw.note),
        references,
        infos,
    })
}

fn validate_info(raw: RawInfo, path: &str) -> Result<CapInfo, CapError> {
    let mut categories = Vec::new();
    for category in raw.category {
        let category = category.trim().to_owned();
        if !CATEGORIES.contains(&category.as_str()) {
            return Err(invalid(
                &format!("{path}/category"),
                &category,
                format!("CAP 1.2 allows {}", CATEGORIES.join(", ")),
            ));
        }
        categories.push(category);
    }
    if categories.is_empty() {
        return Err(CapError::Missing(format!("{path}/category")));
    }
    let event = required(raw.event, &format!("{path}/event"))?;
    let urgency = code(
        raw.urgency,
        &format!("{path}/urgency"),
        &[
            ("Immediate", CapUrgency::Immediate),
            ("Expected", CapUrgency::Expected),
            ("Future", CapUrgency::Future),
            ("Past", CapUrgency::Past),
            ("Unknown", CapUrgency::Unknown),
        ],
    )?;
    let severity = code(
        raw.severity,
        &format!("{path}/severity"),
        &[
            ("Extreme", CapSeverity::Extreme),
            ("Severe", CapSeverity::Severe),
            ("Moderate", CapSeverity::Moderate),
            ("Minor", CapSeverity::Minor),
            ("Unknown", CapSeverity::Unknown),
        ],
    )?;
    let certainty = code(
        raw.certainty,
        &format!("{path}/certainty"),
        &[
            ("Observed", CapCertainty::Observed),
            ("Likely", CapCertainty::Likely),
            ("Possible", CapCertainty::Possible),
            ("Unlikely", CapCertainty::Unlikely),
            ("Unknown", CapCertainty::Unknown),
        ],
    )?;
    let resources = raw
        .resource
        .into_iter()
        .enumerate()
        .map(|(i, r)| validate_resource(r, &format!("{path}/resource[{}]", i + 1)))
        .collect::<Result<_, _>>()?;
    let areas = raw
        .area
        .into_iter()
        .enumerate()
        .map(|(i, a)| validate_area(a, &format!("{path}/area[{}]", i + 1)))
        .collect::<Result<_, _>>()?;
    Ok(CapInfo {
        language: text(raw.language).unwrap_or_else(|| "en-US".to_owned()),
        categories,
        event,
        urgency,
        severity,
        certainty,
        effective: optional_datetime(raw.effective, &format!("{path}/effective"))?,
        onset: optional_datetime(raw.onset, &format!("{path}/onset"))?,
        expires: optional_datetime(raw.expires, &format!("{path}/expires"))?,
        sender_name: text(raw.sender_name),
        headline: text(raw.headline),
        description: text(raw.description),
        instruction: text(raw.instruction),
        resources,
        areas,
    })
}

fn validate_resource(raw: RawResource, path: &str) -> Result<CapResource, CapError> {
    let description = required(raw.resource_desc, &format!("{path}/resourceDesc"))?;
    let mime_type = required(raw.mime_type, &format!("{path}/mimeType"))?;
    let size = text(raw.size)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| invalid(&format!("{path}/size"), &v, "not a whole number of bytes"))
        })
        .transpose()?;
    let digest_sha1 = text(raw.digest)
        .map(|v| {
            if v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(invalid(
                    &format!("{path}/digest"),
                    &v,
                    "not a SHA-1 digest (40 hex digits)",
                ))
            }
        })
        .transpose()?;
    // Senders wrap long base64 over lines: whitespace is not part of it.
    let deref = text(raw.deref_uri)
        .map(|v| {
            let compact: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| {
                    let shown: String = compact.chars().take(24).collect();
                    invalid(
                        &format!("{path}/derefUri"),
                        &format!("{shown}…"),
                        format!("not base64 ({e})"),
                    )
                })
        })
        .transpose()?;
    Ok(CapResource {
        description,
        mime_type,
        size,
        uri: text(raw.uri),
        digest_sha1,
        deref,
    })
}

fn validate_area(raw: RawArea, path: &str) -> Result<CapArea, CapError> {
    let description = required(raw.area_desc, &format!("{path}/areaDesc"))?;
    let geocodes = raw
        .geocode
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let at = format!("{path}/geocode[{}]", i + 1);
            Ok((
                required(pair.value_name, &format!("{at}/valueName"))?,
                required(pair.value, &format!("{at}/value"))?,
            ))
        })
        .collect::<Result<_, CapError>>()?;
    Ok(CapArea {
        description,
        geocodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_LEN: usize = 124;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/cap/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// 07:00 in Chiang Mai on the day of the fixtures.
    fn now() -> DateTime<Utc> {
        at("2026-08-14T07:00:00+07:00")
    }

    /// District 5012 (San Pa Tong, Chiang Mai), Thai first.
    fn policy() -> CapPolicy {
        CapPolicy {
            geocodes: vec![("TIS1099".into(), "5012".into())],
            air_test: false,
            language_prefs: vec!["th".into(), "th-TH".into(), "en".into()],
        }
    }

    fn with_air_test() -> CapPolicy {
        CapPolicy {
            air_test: true,
            ..policy()
        }
    }

    fn english_first() -> CapPolicy {
        CapPolicy {
            language_prefs: vec!["en".into()],
            ..policy()
        }
    }

    #[derive(Debug)]
    enum Want {
        /// level, language, start of the headline, identifiers superseded, has audio
        Air(
            CapLevel,
            &'static str,
            &'static str,
            &'static [&'static str],
            bool,
        ),
        /// start of the reason
        Ignore(&'static str),
        /// identifiers cancelled
        Cancel(&'static [&'static str]),
        /// part of the error's message
        Error(&'static str),
    }

    fn ids(refs: &[CapRef]) -> Vec<&str> {
        refs.iter().map(|r| r.identifier.as_str()).collect()
    }

    #[test]
    fn every_fixture_decides_as_specified() {
        use CapLevel::{Emergency, High};
        let later = at("2026-08-14T19:00:00+07:00");
        #[rustfmt::skip]
        let table: Vec<(&str, CapPolicy, DateTime<Utc>, Want)> = vec![
            ("alert-extreme-th-en.xml", policy(), now(),
             Want::Air(Emergency, "th-TH", "น้ำป่าไหลหลากอำเภอสันป่าตอง", &[], true)),
            ("alert-extreme-th-en.xml", english_first(), now(),
             Want::Air(Emergency, "en-US", "Flash flood in San Pa Tong", &[], false)),
            ("alert-extreme-th-en.xml", policy(), later, Want::Ignore("expired at 2026-08-14T11:30:00")),
            ("alert-severe-province.xml", policy(), now(),
             Want::Air(High, "th", "เตือนพายุฤดูร้อน", &[], false)),
            ("update.xml", policy(), now(),
             Want::Air(Emergency, "th-TH", "น้ำป่าเริ่มลด", &["TH-DDPM-50-20260814-001"], false)),
            ("cancel.xml", policy(), now(),
             Want::Cancel(&["TH-DDPM-50-20260814-001", "TH-DDPM-50-20260814-002"])),
            ("test-status.xml", policy(), now(), Want::Ignore("status Test: logged, not aired")),
            ("test-status.xml", with_air_test(), now(),
             Want::Air(Emergency, "th-TH", "ทดสอบระบบแจ้งเตือนภัย", &[], false)),
            ("exercise.xml", policy(), now(), Want::Ignore("status Exercise: logged, not aired")),
            ("exercise.xml", with_air_test(), now(),
             Want::Air(Emergency, "th-TH", "ฝึกซ้อม: ไฟป่า", &[], false)),
            ("wrong-area.xml", policy(), now(), Want::Ignore(
                "not for this district (areas: อำเภอเมืองลำพูน [TIS1099=5101]; ไปรษณีย์ 50120 [POSTCODE=50120])")),
            ("expired.xml", policy(), now(), Want::Ignore("expired at 2026-08-13T22:00:00")),
            ("ack.xml", policy(), now(), Want::Ignore("msgType Ack: nothing to air")),
            ("bad-xml.xml", policy(), now(), Want::Error(
                "not well-formed XML (at byte 226): ill-formed document: expected `</sender>`, but `</sent>` was found")),
            ("missing-required.xml", policy(), now(), Want::Error("lacks the required <alert/info[1]/urgency>")),
            ("wrong-namespace.xml", policy(), now(), Want::Error(
                "root element is <alert> in namespace 'urn:oasis:names:tc:emergency:cap:1.1', not <alert> in CAP 1.2's")),
            // The digest is only checked by the caller, on the bytes it is about to air.
            ("wrong-digest.xml", policy(), now(),
             Want::Air(Emergency, "th-TH", "น้ำป่าไหลหลาก", &[], true)),
            ("spec-a1-advisory-shape.xml", policy(), now(), Want::Ignore("not for this district (areas: none)")),
            ("spec-a2-thunderstorm-shape.xml", policy(), now(),
             Want::Air(Emergency, "en-US", "SEVERE THUNDERSTORM WARNING", &[], false)),
            ("spec-a3-earthquake-update-shape.xml", policy(), now(),
             Want::Air(High, "th-TH", "แผ่นดินไหวขนาด 4.1", &["TMD-EQ-20260814-0615-v1"], false)),
            ("spec-a4-missing-person-shape.xml", policy(), now(),
             Want::Air(Emergency, "th-TH", "ตามหาเด็กหญิง", &[], false)),
            ("spec-a4-missing-person-shape.xml", english_first(), now(),
             Want::Air(Emergency, "en-US", "Missing girl", &[], false)),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (name, policy, now, want) in table {
            seen.insert(name);
            let got = evaluate(&fixture(name), &policy, now);
            let ok = match (&got, &want) {
                (
                    Ok(CapDecision::Air(air)),
                    Want::Air(level, language, headline, supersedes, audio),
                ) => {
                    air.level == *level
                        && air.language == *language
                        && air.headline.starts_with(headline)
                        && ids(&air.supersedes) == *supersedes
                        && air.resource.is_some() == *audio
                }
                (Ok(CapDecision::Ignore { reason, .. }), Want::Ignore(start)) => {
                    reason.starts_with(start)
                }
                (Ok(CapDecision::Cancel { references, .. }), Want::Cancel(want)) => {
                    ids(references) == *want
                }
                (Err(e), Want::Error(part)) => e.to_string().contains(part),
                _ => false,
            };
            assert!(ok, "{name}: wanted {want:?}, got {got:#?}");
        }
        let mut on_disk: Vec<String> =
            std::fs::read_dir(format!("{}/tests/fixtures/cap", env!("CARGO_MANIFEST_DIR")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".xml"))
                .collect();
        on_disk.sort();
        let seen: Vec<String> = seen.into_iter().map(str::to_owned).collect();
        assert_eq!(on_disk, seen, "every fixture is in the table");
    }

    #[test]
    fn the_first_alert_reads_in_full() {
        let alert = parse(&fixture("alert-extreme-th-en.xml")).unwrap();
        assert_eq!(alert.identifier, "TH-DDPM-50-20260814-001");
        assert_eq!(alert.sender, "cap-chiangmai@disaster.go.th");
        assert_eq!(alert.sent, at("2026-08-13T23:30:00Z"));
        assert_eq!(
            (alert.status, alert.msg_type, alert.scope),
            (CapStatus::Actual, CapMsgType::Alert, CapScope::Public)
        );
        assert_eq!(alert.infos.len(), 2);
        let th = &alert.infos[1];
        assert_eq!(th.categories, ["Met", "Safety"]);
        assert_eq!(
            th.areas[0].geocodes,
            [("TIS1099".to_owned(), "5012".to_owned())]
        );
        assert_eq!(th.resources.len(), 2);

        let CapDecision::Air(air) = decide(&alert, &policy(), now()) else {
            panic!("not aired")
        };
        assert_eq!(air.event, "น้ำป่าไหลหลาก");
        assert_eq!(air.instruction, "อพยพคนและสัตว์เลี้ยงขึ้นที่สูงทันที ห้ามข้ามทางน้ำไหล");
        assert_eq!(air.expires, Some(at("2026-08-14T11:30:00Z")));
        assert_eq!(air.status, CapStatus::Actual);
        assert_eq!(
            air.log_text(),
            "น้ำป่าไหลหลากอำเภอสันป่าตอง ให้ขึ้นที่สูงทันที — น้ำป่าจากดอยอินทนนท์ล้นตลิ่งน้ำแม่วาง ระดับน้ำเพิ่มขึ้นเร็วที่บ้านกาดและยุหว่า"
        );
        // The map image comes first; the audio is the one picked.
        let audio = air.resource.unwrap();
        assert_eq!(audio.mime_type, "audio/x-wav");
        assert_eq!(audio.uri.as_deref(), Some("alert-5012-001.wav"));
        assert_eq!(audio.size, Some(B64_LEN as u64));
        let wav = audio.deref.as_deref().unwrap();
        assert_eq!(wav.len(), B64_LEN);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(
            audio.digest_sha1.as_deref(),
            Some("84f4a3e7ee72a312b5b3c9d41c04110090660511")
        );
        audio.check_digest(wav).unwrap();
        assert!(audio.check_digest(&wav[1..]).is_err());
    }

    #[test]
    fn a_wrong_digest_fails_the_check() {
        let CapDecision::Air(air) =
            evaluate(&fixture("wrong-digest.xml"), &policy(), now()).unwrap()
        else {
            panic!("not aired")
        };
        let audio = air.resource.unwrap();
        let err = audio
            .check_digest(audio.deref.as_deref().unwrap())
            .unwrap_err();
        assert!(matches!(err, CapError::DigestMismatch { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the resource does not match its CAP digest: SHA-1 84f4a3e7ee72a312b5b3c9d41c04110090660511, \
             the message says 0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
        );
        // No digest: nothing to hold the bytes against.
        let bare = CapResource {
            digest_sha1: None,
            ..audio
        };
        bare.check_digest(b"anything").unwrap();
    }

    #[test]
    fn the_cancel_carries_full_references() {
        let CapDecision::Cancel {
            identifier,
            references,
        } = evaluate(&fixture("cancel.xml"), &policy(), now()).unwrap()
        else {
            panic!("not a cancel")
        };
        assert_eq!(identifier, "TH-DDPM-50-20260814-003");
        assert_eq!(
            references[0],
            CapRef {
                sender: "cap-chiangmai@disaster.go.th".into(),
                identifier: "TH-DDPM-50-20260814-001".into(),
                sent: at("2026-08-14T06:30:00+07:00"),
            }
        );
    }

    /// Removes the first `count` elements `<tag>…</tag>` from `xml`.
    fn without(xml: &str, tag: &str, count: usize) -> String {
        let mut xml = xml.to_owned();
        for _ in 0..count {
            let start = xml
                .find(&format!("<{tag}>"))
                .unwrap_or_else(|| panic!("no <{tag}>"));
            let close = format!("</{tag}>");
            let end = xml[start..].find(&close).unwrap() + start + close.len();
            xml.replace_range(start..end, "");
        }
        xml
    }

    #[test]
    fn each_missing_required_element_is_named() {
        let xml = String::from_utf8(fixture("alert-extreme-th-en.xml")).unwrap();
        #[rustfmt::skip]
        let table = [
            ("identifier", 1, "alert/identifier"),
            ("sender", 1, "alert/sender"),
            ("sent", 1, "alert/sent"),
            ("status", 1, "alert/status"),
            ("msgType", 1, "alert/msgType"),
            ("scope", 1, "alert/scope"),
            ("category", 2, "alert/info[1]/category"),
            ("event", 1, "alert/info[1]/event"),
            ("urgency", 1, "alert/info[1]/urgency"),
            ("severity", 1, "alert/info[1]/severity"),
            ("certainty", 1, "alert/info[1]/certainty"),
            ("areaDesc", 1, "alert/info[1]/area[1]/areaDesc"),
            ("valueName", 1, "alert/info[1]/area[1]/geocode[1]/valueName"),
            ("resourceDesc", 1, "alert/info[2]/resource[1]/resourceDesc"),
            ("mimeType", 2, "alert/info[2]/resource[2]/mimeType"),
        ];
        for (tag, count, path) in table {
            let xml = if tag == "mimeType" {
                // Only the second resource's: the first keeps its own.
                let first = xml.find("<mimeType>").unwrap();
                let (head, tail) = xml.split_at(first + 1);
                format!("{head}{}", without(tail, "mimeType", 1))
            } else {
                without(&xml, tag, count)
            };
            match parse(xml.as_bytes()) {
                Err(CapError::Missing(got)) => assert_eq!(got, path, "without <{tag}>"),
                other => panic!("without <{tag}>: {other:?}"),
            }
        }
    }

    #[test]
    fn values_outside_cap_are_named() {
        let xml = String::from_utf8(fixture("alert-severe-province.xml")).unwrap();
        #[rustfmt::skip]
        let table = [
            ("<status>Actual</status>", "<status>Real</status>", "<alert/status> is 'Real'"),
            ("<msgType>Alert</msgType>", "<msgType>alert</msgType>", "<alert/msgType> is 'alert'"),
            ("<urgency>Future</urgency>", "<urgency>Soon</urgency>", "<alert/info[1]/urgency> is 'Soon'"),
            ("<category>Met</category>", "<category>Weather</category>", "<alert/info[1]/category> is 'Weather'"),
            ("2026-08-14T05:00:00+07:00", "14/08/2026 05:00", "<alert/sent> is '14/08/2026 05:00'"),
            ("<identifier>TH-TMD-20260814-STORM-07</identifier>", "<identifier>TH TMD 7</identifier>",
             "<alert/identifier> is 'TH TMD 7'"),
            ("<expires>2026-08-15T23:00:00+07:00</expires>", "<expires>tomorrow</expires>",
             "<alert/info[1]/expires> is 'tomorrow'"),
            ("<scope>Public</scope>", "<scope>Public</scope><references>a,b</references>",
             "<alert/references> is 'a,b': expected sender,identifier,sent"),
            ("<instruction>", "<resource><resourceDesc>x</resourceDesc><mimeType>audio/mpeg</mimeType><derefUri>@@@</derefUri></resource><instruction>",
             "<alert/info[1]/resource[1]/derefUri> is '@@@…': not base64"),
            ("<instruction>", "<resource><resourceDesc>x</resourceDesc><mimeType>audio/mpeg</mimeType><digest>abc</digest></resource><instruction>",
             "<alert/info[1]/resource[1]/digest> is 'abc'"),
        ];
        for (from, to, message) in table {
            assert!(xml.contains(from), "{from}");
            let err = parse(xml.replacen(from, to, 1).as_bytes()).unwrap_err();
            assert!(err.to_string().contains(message), "{to}: {err}");
        }
    }

    #[test]
    fn not_a_cap_1_2_document_is_refused() {
        #[rustfmt::skip]
        let table: [(&[u8], &str); 11] = [
            (b"", "no root element"),
            (b"<?xml version=\"1.0\"?>", "no root element"),
            (b"\xff\xfe<alert/>", "not UTF-8"),
            (b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">", "unclosed"),
            (b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>x</alert>", "not well-formed"),
            (b"<alert><identifier>x</identifier></alert>", "in namespace '', not <alert>"),
            (b"<feed xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>", "root element is <feed>"),
            (b"<!DOCTYPE alert [<!ENTITY a \"aaaa\">]><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>", "DOCTYPE"),
            (b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>",
             "second root"),
            (b"<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>a</identifier><identifier>b</identifier></alert>",
             "duplicate field `identifier`"),
            (b"<x:alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>", "undeclared namespace prefix 'x'"),
        ];
        for (bytes, message) in table {
            let err = parse(bytes).unwrap_err();
            assert!(
                err.to_string().contains(message),
                "{}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let huge = vec![b' '; MAX_CAP_BYTES + 1];
        assert!(matches!(parse(&huge), Err(CapError::TooLarge { .. })));
    }

    #[test]
    fn a_prefixed_namespace_and_a_bom_are_fine() {
        let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<cap:alert xmlns:cap=\"urn:oasis:names:tc:emergency:cap:1.2\">
  <cap:identifier>P-1</cap:identifier><cap:sender>s@example.go.th</cap:sender>
  <cap:sent>2026-08-14T06:00:00-00:00</cap:sent><cap:status>Actual</cap:status>
  <cap:msgType>Alert</cap:msgType><cap:scope>Public</cap:scope>
  <cap:info><cap:category>Fire</cap:category><cap:event>ไฟป่า</cap:event>
    <cap:urgency>Expected</cap:urgency><cap:severity>Moderate</cap:severity>
    <cap:certainty>Likely</cap:certainty>
    <cap:description><![CDATA[ควัน <หนา> & ร้อน
      ปิดหน้าต่าง]]></cap:description>
    <cap:area><cap:areaDesc>สันป่าตอง</cap:areaDesc>
      <cap:geocode><cap:valueName>TIS1099</cap:valueName><cap:value>5012</cap:value></cap:geocode>
    </cap:area></cap:info>
</cap:alert>";
        let alert = parse(xml.as_bytes()).unwrap();
        assert_eq!(alert.sent, at("2026-08-14T06:00:00Z"));
        let CapDecision::Air(air) = decide(&alert, &policy(), now()) else {
            panic!("not aired")
        };
        assert_eq!(air.level, CapLevel::High);
        assert_eq!(air.language, "en-US", "CAP's default language");
        assert_eq!(
            air.headline, "ไฟป่า",
            "the event stands in for a missing headline"
        );
        assert_eq!(air.log_text(), "ไฟป่า — ควัน <หนา> & ร้อน ปิดหน้าต่าง");
    }

    #[test]
    fn system_and_draft_never_air() {
        let xml = String::from_utf8(fixture("test-status.xml")).unwrap();
        for status in ["System", "Draft"] {
            let xml = xml.replace(
                "<status>Test</status>",
                &format!("<status>{status}</status>"),
            );
            let decision = evaluate(xml.as_bytes(), &with_air_test(), now()).unwrap();
            assert_eq!(
                decision,
                CapDecision::Ignore {
                    identifier: "TH-DDPM-50-20260814-T01".into(),
                    reason: format!("status {status}: never aired"),
                }
            );
        }
    }

    #[test]
    fn cancels_and_errors_without_substance_are_ignored() {
        let cancel = String::from_utf8(fixture("cancel.xml")).unwrap();
        let start = cancel.find("<references>").unwrap();
        let end = cancel.find("</references>").unwrap() + "</references>".len();
        let mut bare = cancel.clone();
        bare.replace_range(start..end, "");
        let decision = evaluate(bare.as_bytes(), &policy(), now()).unwrap();
        assert!(
            matches!(decision, CapDecision::Ignore { ref reason, .. } if reason.starts_with("Cancel without")),
            "{decision:?}"
        );

        let error = cancel.replace("<msgType>Cancel</msgType>", "<msgType>Error</msgType>");
        let decision = evaluate(error.as_bytes(), &policy(), now()).unwrap();
        assert!(
            matches!(decision, CapDecision::Ignore { ref reason, .. } if reason == "msgType Error: nothing to air")
        );

        let no_info = String::from_utf8(fixture("ack.xml"))
            .unwrap()
            .replace("<msgType>Ack</msgType>", "<msgType>Alert</msgType>");
        let decision = evaluate(no_info.as_bytes(), &policy(), now()).unwrap();
        assert!(
            matches!(decision, CapDecision::Ignore { ref reason, .. } if reason == "no <info> block: nothing to air")
        );
    }

    #[test]
    fn geocodes_match_by_name_and_nesting() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        #[rustfmt::skip]
        let table = [
            (("TIS1099", "5012"), ("TIS1099", "5012"), true),
            (("TIS1099", "5012"), ("TIS1099", "50"), true),      // the whole province
            (("TIS1099", "5012"), ("TIS1099", "501205"), true),  // a sub-district of ours
            (("TIS1099", "5012"), ("TIS1099", "5013"), false),   // the neighbour
            (("TIS1099", "5012"), ("TIS1099", "51"), false),     // another province
            (("TIS1099", "5012"), ("TIS1099", "501"), true),     // shorter, still a prefix
            (("TIS1099", "5012"), ("POSTCODE", "5012"), false),  // same digits, other system
            (("TIS1099", "5012"), ("tis1099", "5012"), false),   // valueName is exact
            (("TIS1099", "5012"), ("TIS1099", " 5012 "), true),
            (("TIS1099", "5012"), ("TIS1099", ""), false),       // empty is no prefix of all
            (("TIS1099", ""), ("TIS1099", "5012"), false),
        ];
        for (ours, theirs, want) in table {
            assert_eq!(
                geocode_matches(&[pair(ours.0, ours.1)], &[pair(theirs.0, theirs.1)]),
                want,
                "ours {ours:?}, alert {theirs:?}"
            );
        }
        assert!(!geocode_matches(&[], &[pair("TIS1099", "50")]));
    }

    #[test]
    fn severity_and_urgency_give_the_level() {
        use CapSeverity as S;
        use CapUrgency as U;
        for severity in [S::Extreme, S::Severe, S::Moderate, S::Minor, S::Unknown] {
            for urgency in [U::Immediate, U::Expected, U::Future, U::Past, U::Unknown] {
                let want = if matches!(severity, S::Extreme | S::Severe)
                    && matches!(urgency, U::Immediate | U::Expected)
                {
                    CapLevel::Emergency
                } else {
                    CapLevel::High
                };
                assert_eq!(level(severity, urgency), want, "{severity:?} {urgency:?}");
            }
        }
    }

    #[test]
    fn language_preference_picks_the_block() {
        let alert = parse(&fixture("alert-extreme-th-en.xml")).unwrap();
        #[rustfmt::skip]
        let table: [(&[&str], &str); 6] = [
            (&["th", "th-TH", "en"], "th-TH"),  // "th" takes "th-TH" by primary language
            (&["th-TH"], "th-TH"),
            (&["en-US", "th"], "en-US"),
            (&["en-GB", "th-TH"], "th-TH"),     // an exact tag beats a primary match
            (&["lo", "my"], "en-US"),           // nothing fits: the first block
            (&[], "en-US"),
        ];
        for (prefs, want) in table {
            let policy = CapPolicy {
                language_prefs: prefs.iter().map(|p| p.to_string()).collect(),
                ..policy()
            };
            let CapDecision::Air(air) = decide(&alert, &policy, now()) else {
                panic!("not aired")
            };
            assert_eq!(air.language, want, "{prefs:?}");
        }
    }

    #[test]
    fn an_expired_block_gives_way_to_a_live_one() {
        // Two Thai blocks for our district: the first expired, the second still live.
        let xml = String::from_utf8(fixture("expired.xml")).unwrap();
        let start = xml.find("<info>").unwrap();
        let end = xml.find("</info>").unwrap() + "</info>".len();
        let live = xml[start..end]
            .replace("2026-08-14T05:00:00+07:00", "2026-08-14T09:00:00+07:00")
            .replace("หมอกหนาบนถนนสาย 108", "หมอกยังหนา");
        let two = format!("{}{}{}", &xml[..end], live, &xml[end..]);
        let CapDecision::Air(air) = evaluate(two.as_bytes(), &policy(), now()).unwrap() else {
            panic!("not aired")
        };
        assert_eq!(air.headline, "หมอกยังหนา");
        assert_eq!(air.level, CapLevel::High);
    }
}
