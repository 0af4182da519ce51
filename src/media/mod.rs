//! Audio facts and audio samples: probe an untrusted file (format sniffed from the bytes,
//! duration measured by decoding, loudness by EBU R128) and open a stored file as a rodio
//! `Source` for playout. Everything here decodes with symphonia; nothing here knows HTTP or SQL.
//!
//! INTERFACE CONTRACT (used by api/ and playout/; keep these signatures):
//! - `probe_isolated(path, budget) -> Result<ProbeInfo, MediaError>`
//! - `open_source(path, gain_db) -> Result<DecodedSource, MediaError>`; `DecodedSource: rodio::Source + Send + 'static`
//! - `MediaError::code()` -> stable snake_case code for API error bodies; `Display` -> a sentence for a person.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// What decoding the whole file found out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeInfo {
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_ms: u64,
    pub loudness_lufs: Option<f64>,
}

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

pub fn probe(_path: &Path) -> Result<ProbeInfo, MediaError> {
    todo!("media helper")
}

pub fn probe_isolated(_path: PathBuf, _budget: Duration) -> Result<ProbeInfo, MediaError> {
    todo!("media helper")
}

/// A decoded stored file, gain applied, as a rodio source.
pub struct DecodedSource;

pub fn open_source(_path: &Path, _gain_db: f32) -> Result<DecodedSource, MediaError> {
    todo!("media helper")
}
