//! Probing untrusted audio in a child process (`hokrajai probe-file`, see main.rs), with a
//! memory ceiling and a time budget. A decoder that panics is caught by the thread isolation of
//! [`super::probe_isolated`], but one that asks for an absurd allocation aborts the whole process
//! (the fuzzer found an m4a whose `stsc` atom claims 1.7 billion entries): in a child, that ends
//! the child, not the daemon. Used for uploads, files pulled from the province and CAP audio.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{probe_isolated, MediaError, ProbeInfo};

/// Probe `path` in a child process; falls back to a thread when the child cannot be started
/// (the binary was replaced on disk by an upgrade, say).
///
/// The child prints one JSON line: `{"ok": ProbeInfo}` or `{"error": code, "message": text}`.
/// Errors: what the child reported, [`MediaError::Timeout`] past `budget` (the child is
/// killed), [`MediaError::Panicked`] when the child died (an abort, a signal).
pub async fn probe_in_child(path: PathBuf, budget: Duration) -> Result<ProbeInfo, MediaError> {
    let spawned = std::env::current_exe().and_then(|exe| {
        tokio::process::Command::new(exe)
            .arg("probe-file")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
    });
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the probe process; probing on a thread instead");
            return tokio::task::spawn_blocking(move || probe_isolated(path, budget))
                .await
                .map_err(|e| MediaError::Panicked(e.to_string()))?;
        }
    };
    // Dropping the child on timeout kills it.
    let out = match tokio::time::timeout(budget, child.wait_with_output()).await {
        Err(_) => return Err(MediaError::Timeout(budget)),
        Ok(Err(e)) => return Err(MediaError::Io(e)),
        Ok(Ok(out)) => out,
    };
    #[derive(Deserialize)]
    struct Answer {
        ok: Option<ProbeInfo>,
        error: Option<String>,
        message: Option<String>,
    }
    let answer: Option<Answer> = std::str::from_utf8(&out.stdout)
        .ok()
        .and_then(|t| t.lines().last())
        .and_then(|l| serde_json::from_str(l).ok());
    match answer {
        Some(Answer { ok: Some(p), .. }) if out.status.success() => Ok(p),
        Some(Answer {
            error: Some(code),
            message,
            ..
        }) => {
            let message = message.unwrap_or_default();
            Err(match code.as_str() {
                "empty_file" => MediaError::Empty,
                "not_audio" => MediaError::NotAudio(message),
                "decode_timeout" => MediaError::Timeout(budget),
                // The file was just written by us: a read error here comes from the file's
                // contents (a seek to an offset its header invents: EINVAL), not from the disk.
                "undecodable" | "io_error" => MediaError::Undecodable(message),
                _ => MediaError::Panicked(message),
            })
        }
        _ => {
            tracing::warn!(status = %out.status, path = %path.display(), "the decoder died on untrusted audio");
            Err(MediaError::Panicked(format!(
                "the decoder failed on this file ({})",
                out.status
            )))
        }
    }
}
