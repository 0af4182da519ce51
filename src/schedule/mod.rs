//! The pure schedule core: slot files, their occurrences in the box's time zone, and the plan of
//! what airs in each occurrence. No IO, no clock, no async: every function takes `now` or a time
//! range as an argument, so the same inputs always give the same plan.

mod calendar;
mod duration;
mod plan;
mod slots;

pub use calendar::{Calendar, Holiday, QuietHours};
pub use duration::{format_duration, parse_duration};
pub use plan::{
    day_bounds, fill_occurrence, local_day, missed_for_day, plan, AiredCounts, Candidate, DayPlan,
    Missed, PlanInput, PlannedAiring, PlayRules,
};
pub use slots::{parse_slot_file, Days, Occurrence, ScheduleError, Slot, Timetable};
