//! Plain data types shared by every layer: announcements, slots, airings, roles. No IO here.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type AnnouncementId = i64;

/// Who a bearer token speaks for. Checked in one place, `api::auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Uploader,
    Approver,
    Auditor,
    Admin,
    /// A district box reporting to its province (issue #3): may only report its own airtime
    /// and hand over CAP alerts, nothing else.
    Box,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Uploader,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
        Role::Box,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Uploader => "uploader",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Box => "box",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role '{s}' (expected uploader, approver, auditor, admin or box)")
            })
    }
}

/// Order inside a slot: higher first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Normal,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" | "" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            _ => Err(format!("unknown priority '{s}' (expected normal or high)")),
        }
    }
}

/// The approval state of an announcement. Only `Approved` may air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnouncementStatus {
    Pending,
    Approved,
    Rejected,
    Withdrawn,
}

impl AnnouncementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnouncementStatus::Pending => "pending",
            AnnouncementStatus::Approved => "approved",
            AnnouncementStatus::Rejected => "rejected",
            AnnouncementStatus::Withdrawn => "withdrawn",
        }
    }
}

impl FromStr for AnnouncementStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            "withdrawn" => Ok(Self::Withdrawn),
            _ => Err(format!("unknown status '{s}'")),
        }
    }
}

/// An announcement as stored: the audio's facts (measured by decoding) plus its script and rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub id: AnnouncementId,
    pub title: String,
    pub script: String,
    pub agency: String,
    pub priority: Priority,
    pub status: AnnouncementStatus,
    pub sha256: String,
    pub size_bytes: u64,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: u64,
    pub loudness_lufs: Option<f64>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub plays_per_day: u32,
    /// Output names this announcement is for; never empty once stored.
    pub outputs: Vec<String>,
    pub uploaded_by: String,
    pub created_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Where it came from: uploaded here, pulled from the province, or a CAP alert.
    pub source: Source,
    /// The province's item id (`<upstream>/<id>`) or the CAP message (`sender/identifier`).
    pub source_ref: Option<String>,
}

/// Where an announcement came from. Only `Local` ones go through this box's two-person
/// approval; the others arrive approved (by the province, or by the CAP sender's authority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Local,
    Province,
    Cap,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Province => "province",
            Source::Cap => "cap",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Self::Local),
            "province" => Ok(Self::Province),
            "cap" => Ok(Self::Cap),
            _ => Err(format!("unknown announcement source '{s}'")),
        }
    }
}

impl Announcement {
    /// May this announcement air at `at` on `output`? (Airings left for the day are the
    /// planner's business, not this one's.)
    pub fn eligible_at(&self, at: DateTime<Utc>, output: &str) -> bool {
        self.status == AnnouncementStatus::Approved
            && self.valid_from.is_none_or(|f| f <= at)
            && self.valid_until.is_none_or(|u| at < u)
            && self.outputs.iter().any(|o| o == output)
    }
}

/// What happened to one airing. `Playing` is the only state a row may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AirtimeStatus {
    Playing,
    Completed,
    Interrupted,
    Failed,
    Missed,
}

impl AirtimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AirtimeStatus::Playing => "playing",
            AirtimeStatus::Completed => "completed",
            AirtimeStatus::Interrupted => "interrupted",
            AirtimeStatus::Failed => "failed",
            AirtimeStatus::Missed => "missed",
        }
    }
}

impl FromStr for AirtimeStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "playing" => Ok(Self::Playing),
            "completed" => Ok(Self::Completed),
            "interrupted" => Ok(Self::Interrupted),
            "failed" => Ok(Self::Failed),
            "missed" => Ok(Self::Missed),
            _ => Err(format!("unknown airtime status '{s}'")),
        }
    }
}

/// One row of the airtime (as-run) log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AirtimeEntry {
    pub id: i64,
    pub announcement_id: Option<AnnouncementId>,
    pub title: String,
    pub sha256: String,
    pub output: String,
    pub slot: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub status: AirtimeStatus,
    pub detail: String,
}

/// What a player is told to air: who it is and when it was planned. Passed from the runner to a
/// player and back in the player's journal calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiringInfo {
    pub announcement_id: AnnouncementId,
    pub title: String,
    pub sha256: String,
    pub output: String,
    pub slot: String,
    pub scheduled_at: DateTime<Utc>,
}
