//! Audio facts and audio samples: probe an untrusted file (format sniffed from the bytes,
//! duration measured by decoding, loudness by EBU R128) and open a stored file as a rodio
//! `Source` for playout. Everything here decodes with symphonia; nothing here knows HTTP or SQL.
//!
//! INTERFACE CONTRACT (used by api/ and playout/; keep these signatures):
//! - `probe_isolated(path, budget) -> Result<ProbeInfo, MediaError>`; `probe_in_child` (async)
//! - `open_source(path, gain_db) -> Result<DecodedSource, MediaError>`; `DecodedSource: rodio::Source + Send + 'static`
//! - `MediaError::code()` -> stable snake_case code for API error bodies; `Display` -> a sentence for a person.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod child;
mod decode;
mod probe;
mod source;

pub use child::probe_in_child;
pub use probe::{probe, probe_isolated};
pub use source::{open_source, DecodeErrorFlag, DecodedSource};

/// What decoding the whole file found out.
///
/// `sample_rate` and `channels` are those of the first decoded buffer (what a listener hears
/// first; a container's header may say otherwise, or nothing, as AAC in MP4 does for channels).
/// `duration_ms` counts decoded frames, never a header. `loudness_lufs` is EBU R128 integrated
/// loudness; `None` when the file is too short to measure (under 0.4 s) or silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: u64,
    pub loudness_lufs: Option<f64>,
}

/// Why a file was refused or could not be played. Each message names what was found, so that the
/// person uploading can act on it.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not audio in a format we accept (mp3, ogg vorbis, opus, flac, wav, m4a/aac): {0}")]
    NotAudio(String),
    #[error("the audio could not be decoded: {0}")]
    Undecodable(String),
    #[error("decoding took longer than {0:?}; the file was refused")]
    Timeout(Duration),
    #[error("the decoder failed on this file: {0}")]
    Panicked(String),
    #[error("reading the audio failed: {0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// A stable snake_case code for API error bodies (the `Display` text is for people).
    pub fn code(&self) -> &'static str {
        match self {
            MediaError::Empty => "empty_file",
            MediaError::NotAudio(_) => "not_audio",
            MediaError::Undecodable(_) => "undecodable",
            MediaError::Timeout(_) => "decode_timeout",
            MediaError::Panicked(_) => "decoder_failed",
            MediaError::Io(_) => "io_error",
        }
    }
}
