//! hokrajai: playout daemon for Thai village broadcast towers (หอกระจายข่าว) and wired PA
//! systems (เสียงตามสาย). The binary in `main.rs` only wires these modules together.
#![forbid(unsafe_code)]

pub mod clock;
pub mod domain;
pub mod media;
pub mod playout;
pub mod thai;
