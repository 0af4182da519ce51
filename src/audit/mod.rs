//! What lets an auditor believe the airtime log: the hash chain's canonical form (`chain`, shared
//! by the store and the verifier), the box's Ed25519 key (`key`), signed exports and their offline
//! verification (`export`), and the planned-vs-aired day report (`report`).

pub mod chain;
pub mod export;
pub mod key;
pub mod report;

pub use export::{export, verify, ExportSummary, Problem, Signed, Verified};
pub use key::{parse_public_key, BoxKey, KeyError};
pub use report::{day_report, render_text, DayReport};
