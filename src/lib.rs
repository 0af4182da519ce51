//! hokrajai: playout daemon for Thai village broadcast towers (หอกระจายข่าว) and wired PA
//! systems (เสียงตามสาย). The binary in `main.rs` only wires these modules together.
// One block in playout/pacer.rs needs unsafe (cpal offers no safe constructor for its buffer);
// everything else is denied it.
#![deny(unsafe_code)]

pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
pub mod domain;
pub mod media;
pub mod playout;
pub mod runner;
pub mod schedule;
pub mod store;
pub mod sync;
pub mod thai;
