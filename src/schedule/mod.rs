//! The pure schedule core: slot files, their occurrences in the box's time zone, and the plan of
//! what airs in each occurrence. No IO, no clock, no async: every function takes `now` or a time
//! range as an argument, so the same inputs always give the same plan.

mod duration;
mod plan;
mod slots;

pub use duration::{format_duration, parse_duration};
pub use plan::{fill_occurrence, plan, AiredCounts, Candidate, PlanInput, PlannedAiring};
pub use slots::{occurrences, parse_slot_file, Occurrence, ScheduleError, Slot};
