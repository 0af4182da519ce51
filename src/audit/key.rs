//! The box's Ed25519 key: made on first start in `<data_dir>/box.key` (the 32-byte seed as hex,
//! mode 0600, written atomically), with the public half in `box.pub` for convenience. Exports
//! are signed with it; auditors verify with the public key they were given when the box was
//! installed (`hokrajai audit pubkey`), never with one read from the export itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

pub const KEY_FILE: &str = "box.key";
pub const PUBLIC_FILE: &str = "box.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("box key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("box key {path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("no randomness for a new box key: {0}")]
    Random(String),
    #[error("'{0}' is not an Ed25519 public key (64 hex digits, or a file holding them)")]
    BadPublicKey(String),
    #[error("the signature is not valid for this public key")]
    BadSignature,
    #[error("{0} already exists; refusing to overwrite a key (move it away first)")]
    Exists(PathBuf),
    /// A key file other than the box's own (`hokrajai keygen`, `publish --key`).
    #[error("key file {path}: {why}")]
    KeyFile { path: PathBuf, why: String },
}

/// Name errors about a key file given on the command line as such, not as the box key.
fn key_file_error(e: KeyError) -> KeyError {
    match e {
        KeyError::Io { path, source } => KeyError::KeyFile {
            path,
            why: source.to_string(),
        },
        KeyError::Damaged { path, why } => KeyError::KeyFile {
            path,
            why: format!("not a key (64 hex digits): {why}"),
        },
        other => other,
    }
}

/// The box's signing key. Debug never shows the secret.
pub struct BoxKey {
    signing: SigningKey,
}

impl std::fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BoxKey(public {})", self.public_hex())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BoxKey {
    /// Read `<data_dir>/box.key`, or make it if there is none. A key file readable by others is
    /// tightened to 0600 (with a warning) rather than refused: refusing would stop playout.
    pub fn load_or_create(data_dir: &Path) -> Result<BoxKey, KeyError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = Self::parse(&path, &text)?;
                tighten(&path);
                key.write_public(data_dir);
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(data_dir, &path),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Read an existing key only (the CLI's verify and pubkey must not invent a key).
    pub fn load(data_dir: &Path) -> Result<BoxKey, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Self::parse(&path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<BoxKey, KeyError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|e| KeyError::Damaged {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(BoxKey {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    fn create(data_dir: &Path, path: &Path) -> Result<BoxKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        // Write beside it and rename: a crash leaves either no key or a whole one.
        let tmp = data_dir.join(format!(".{KEY_FILE}.tmp"));
        write_seed(&tmp, &seed)?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Ok(dir) = std::fs::File::open(data_dir) {
            let _ = dir.sync_all();
        }
        let key = BoxKey {
            signing: SigningKey::from_bytes(&seed),
        };
        key.write_public(data_dir);
        tracing::info!(public_key = %key.public_hex(), path = %path.display(), "made this box's signing key");
        Ok(key)
    }

    /// `box.pub`, for people; failing to write it is only worth a warning.
    fn write_public(&self, data_dir: &Path) {
        let path = data_dir.join(PUBLIC_FILE);
        let text = format!("{}\n", self.public_hex());
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if let Err(e) = std::fs::write(&path, text) {
                tracing::warn!(path = %path.display(), error = %e, "could not write the public key file");
            }
        }
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// The Ed25519 signature of `message`, as 128 hex digits.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// The seed as one line of hex in a new file readable by its owner only, synced to disk.
fn write_seed(tmp: &Path, seed: &[u8; 32]) -> Result<(), KeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(tmp).map_err(io(tmp))?;
    writeln!(f, "{}", hex::encode(seed)).map_err(io(tmp))?;
    f.sync_all().map_err(io(tmp))
}

/// A new Ed25519 signing key from the operating system's randomness (`hokrajai keygen`: the
/// province's publishing key).
pub fn generate_signing_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Write `key`'s seed to `path` (64 hex digits, mode 0600) and its public half to `path.pub`.
/// Refuses if `path` exists: overwriting a publishing key would lock every box that trusts it
/// out. Atomic: the seed goes to a temp file beside it, synced, then is linked into place
/// (a hard link, which fails if the name was taken meanwhile), so a crash leaves no half key.
/// Returns the path of the public key file.
pub fn write_new_key_file(path: &Path, key: &SigningKey) -> Result<PathBuf, KeyError> {
    write_key_files(path, key).map_err(key_file_error)
}

fn write_key_files(path: &Path, key: &SigningKey) -> Result<PathBuf, KeyError> {
    if path.symlink_metadata().is_ok() {
        return Err(KeyError::Exists(path.to_path_buf()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    write_seed(&tmp, &key.to_bytes())?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(KeyError::Exists(path.to_path_buf()))
        }
        Err(e) => return Err(io(path)(e)),
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    let text = format!("{}\n", hex::encode(key.verifying_key().as_bytes()));
    std::fs::write(&public, text).map_err(io(&public))?;
    Ok(public)
}

/// Read a signing key written by [`write_new_key_file`] (or a box key): 64 hex digits.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(io(path))
        .map_err(key_file_error)?;
    BoxKey::parse(path, &text)
        .map(|k| k.signing)
        .map_err(key_file_error)
}

/// A public key as people and manifests write it: 64 lowercase hex digits.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

#[cfg(unix)]
fn tighten(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the box key was readable by others; setting it to 0600");
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[cfg(not(unix))]
fn tighten(_path: &Path) {}

/// A public key given by an auditor: 64 hex digits, or a file holding them.
pub fn parse_public_key(arg: &str) -> Result<VerifyingKey, KeyError> {
    let text = if arg.trim().len() == 64 {
        arg.trim().to_owned()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|_| KeyError::BadPublicKey(arg.chars().take(80).collect()))?
            .trim()
            .to_owned()
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&text, &mut bytes)
        .map_err(|_| KeyError::BadPublicKey(arg.chars().take(80).collect()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey(text))
}

/// Check a hex signature of `message` by `key` (strict: no malleable signatures).
pub fn verify_hex(key: &VerifyingKey, message: &[u8], signature_hex: &str) -> Result<(), KeyError> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut bytes).map_err(|_| KeyError::BadSignature)?;
    let sig = Signature::from_bytes(&bytes);
    key.verify_strict(message, &sig)
        .map_err(|_| KeyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = BoxKey::load_or_create(dir.path()).unwrap();
        let b = BoxKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let public = std::fs::read_to_string(dir.path().join(PUBLIC_FILE)).unwrap();
        assert_eq!(public.trim(), a.public_hex());
        assert!(!format!("{a:?}").contains(
            std::fs::read_to_string(dir.path().join(KEY_FILE))
                .unwrap()
                .trim()
        ));
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let key = BoxKey::load_or_create(dir.path()).unwrap();
        let other = BoxKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        let sig = key.sign_hex(b"head");
        let public = parse_public_key(&key.public_hex()).unwrap();
        verify_hex(&public, b"head", &sig).unwrap();
        assert!(verify_hex(&public, b"head2", &sig).is_err());
        let wrong = parse_public_key(&other.public_hex()).unwrap();
        assert!(verify_hex(&wrong, b"head", &sig).is_err());
        assert!(verify_hex(&public, b"head", "00").is_err());
        // From a file too.
        let from_file = parse_public_key(dir.path().join(PUBLIC_FILE).to_str().unwrap()).unwrap();
        assert_eq!(from_file, public);
        assert!(parse_public_key("not a key").is_err());
    }

    #[test]
    fn a_new_key_file_is_private_refuses_overwrite_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("province.key");
        let key = generate_signing_key().unwrap();
        let public = write_new_key_file(&path, &key).unwrap();
        assert_eq!(public, dir.path().join("province.key.pub"));
        let loaded = load_signing_key(&path).unwrap();
        assert_eq!(loaded.to_bytes(), key.to_bytes());
        assert_eq!(
            std::fs::read_to_string(&public).unwrap().trim(),
            public_hex(&key.verifying_key())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = generate_signing_key().unwrap();
        assert_ne!(other.to_bytes(), key.to_bytes());
        assert!(matches!(
            write_new_key_file(&path, &other),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        let missing = load_signing_key(&dir.path().join("nope.key")).unwrap_err();
        assert!(missing.to_string().starts_with("key file "), "{missing}");
        // No temp file left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
