//! Sealing of secrets at rest (DESIGN.md §4 "Keys sealed at rest").
//!
//! A [`Sealer`] holds the key-encryption key (KEK) and encrypts with AES-256-GCM under a fresh
//! random 96-bit nonce per call. The associated data names the row a ciphertext belongs to, so a
//! blob copied into another row fails to open. A sealed blob is self-describing:
//!
//! ```text
//! format version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//! ```
//!
//! The KEK comes from an environment variable or a file of base64 text; the embedded default
//! creates that file (mode 0600, set at open time) on first run.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Length of the key-encryption key (AES-256).
pub const KEY_LEN: usize = 32;
/// The first byte of every blob this version of certfleet seals.
pub const FORMAT_V1: u8 = 1;
/// Length of the GCM authentication tag appended to the ciphertext.
const TAG_LEN: usize = 16;
/// Mode bits that must be clear on a key file: nothing for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;
/// Mode a new key file gets at open time.
const KEY_FILE_MODE: u32 = 0o600;

/// Why a key could not be loaded or a blob could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key text is not standard base64 (the text is never echoed).
    #[error("key-encryption key is not valid standard base64 (expected {KEY_LEN} bytes encoded)")]
    BadBase64,
    /// The key decodes to the wrong number of bytes.
    #[error("key-encryption key must be exactly {KEY_LEN} bytes, base64-encoded; it has {0}")]
    BadLength(usize),
    /// The key file is readable or writable by group or others.
    #[error(
        "key-encryption key file {} is accessible by group or others (mode {mode:03o}); \
         run `chmod 600 {}` and start again", path.display(), path.display()
    )]
    InsecureMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is a directory, socket or the like.
    #[error("key-encryption key path {} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Reading or writing the key file failed.
    #[error("cannot {action} key-encryption key file {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The blob is too short or has an unknown format version.
    #[error("sealed data is malformed: {0}")]
    Malformed(String),
    /// Authentication failed: wrong key, altered bytes, or a blob moved to another row.
    #[error("sealed data failed to authenticate (wrong key-encryption key, altered, or moved)")]
    Open,
}

/// AES-256-GCM sealing under the key-encryption key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    /// A sealer over raw key bytes.
    pub fn from_key_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).expect("AES-256 takes a 32-byte key");
        Self {
            key: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// A sealer over a key given as standard base64 of exactly [`KEY_LEN`] bytes. Surrounding
    /// whitespace (a trailing newline) is ignored.
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let mut decoded = STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadBase64)?;
        let result = <[u8; KEY_LEN]>::try_from(decoded.as_slice())
            .map(Self::from_key_bytes)
            .map_err(|_| SealError::BadLength(decoded.len()));
        decoded.iter_mut().for_each(|b| *b = 0);
        result
    }

    /// The key from `env_value` (an environment variable's value) when given, else
    /// [`load_or_create`](Self::load_or_create) at `path`. The flag tells whether a key file was
    /// created, so the caller can say so.
    pub fn from_env_or_file(
        env_value: Option<&str>,
        path: &Path,
    ) -> Result<(Self, bool), SealError> {
        match env_value {
            Some(text) => Ok((Self::from_base64(text)?, false)),
            None => Self::load_or_create(path),
        }
    }

    /// Load the key file at `path`, or create it with a fresh random key if it is missing.
    /// Refuses a file that group or others may access. Returns whether the file was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), SealError> {
        match read_key_file(path) {
            Ok(sealer) => Ok((sealer, false)),
            Err(SealError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                create_key_file(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Encrypt `plaintext`, binding it to `aad` (which names the row it belongs to).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random number generator failed");
        let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
        body.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .expect("AES-GCM sealing of an in-memory buffer does not fail");
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + body.len());
        blob.push(FORMAT_V1);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&body);
        blob
    }

    /// Decrypt a blob made by [`seal`](Self::seal) with the same key and `aad`.
    pub fn open(&self, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = blob
            .split_first()
            .ok_or_else(|| SealError::Malformed("empty".into()))?;
        if version != FORMAT_V1 {
            return Err(SealError::Malformed(format!(
                "unknown format version {version}"
            )));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed(format!("only {} bytes", blob.len())));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = body.to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| SealError::Open)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SealError {
    let path = path.to_path_buf();
    move |source| SealError::Io {
        action,
        path,
        source,
    }
}

/// Read an existing key file, checking its type and mode on the opened handle.
fn read_key_file(path: &Path) -> Result<Sealer, SealError> {
    let mut file = File::open(path).map_err(io_error("read", path))?;
    let meta = file.metadata().map_err(io_error("inspect", path))?;
    if !meta.is_file() {
        return Err(SealError::NotAFile(path.to_path_buf()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(SealError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(io_error("read", path))?;
    let sealer = Sealer::from_base64(&text);
    // Overwrite the key text we own before it drops.
    let mut bytes = text.into_bytes();
    bytes.iter_mut().for_each(|b| *b = 0);
    sealer
}

/// Write a fresh key under a temporary name (created 0600), fsync it, link it into place
/// without clobbering, then fsync the directory. A crash never leaves a half-written key at
/// `path`; a concurrent creator wins and its key is used.
fn create_key_file(path: &Path) -> Result<(Sealer, bool), SealError> {
    let mut key = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| SealError::Random)?;
    let mut text = STANDARD.encode(key);
    text.push('\n');
    let tmp = temp_name(path)?;
    let written = write_new_file(&tmp, text.as_bytes(), path);
    let mut text_bytes = text.into_bytes();
    text_bytes.iter_mut().for_each(|b| *b = 0);
    written?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return read_key_file(path).map(|s| (s, false));
        }
        Err(e) => return Err(io_error("create", path)(e)),
    }
    sync_parent(path)?;
    let sealer = Sealer::from_key_bytes(key);
    key.iter_mut().for_each(|b| *b = 0);
    Ok((sealer, true))
}

fn temp_name(path: &Path) -> Result<PathBuf, SealError> {
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| SealError::Random)?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".new-{hex}"));
    Ok(PathBuf::from(name))
}

/// Create `path` with mode 0600 and write `contents`; errors name `final_path`, the file the
/// user asked for.
fn write_new_file(path: &Path, contents: &[u8], final_path: &Path) -> Result<(), SealError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(io_error("create", final_path))?;
    let result = file.write_all(contents).and_then(|()| file.sync_all());
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result.map_err(io_error("write", final_path))
}

fn sync_parent(path: &Path) -> Result<(), SealError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error("sync the directory of", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::from_key_bytes([byte; KEY_LEN])
    }

    #[test]
    fn round_trip() {
        let s = sealer(7);
        let blob = s.seal(b"secret key", b"row-1");
        assert_eq!(blob[0], FORMAT_V1);
        assert_eq!(blob.len(), 1 + NONCE_LEN + 10 + TAG_LEN);
        assert_eq!(s.open(&blob, b"row-1").unwrap(), b"secret key");
        assert_ne!(s.seal(b"secret key", b"row-1"), blob, "nonce must be fresh");
        assert_eq!(s.open(&s.seal(b"", b"x"), b"x").unwrap(), b"");
    }

    #[test]
    fn wrong_aad_fails() {
        let s = sealer(7);
        let blob = s.seal(b"secret key", b"row-1");
        assert!(matches!(s.open(&blob, b"row-2"), Err(SealError::Open)));
    }

    #[test]
    fn wrong_key_fails() {
        let blob = sealer(7).seal(b"secret key", b"row-1");
        assert!(matches!(
            sealer(8).open(&blob, b"row-1"),
            Err(SealError::Open)
        ));
    }

    #[test]
    fn tampered_byte_fails() {
        let s = sealer(7);
        let blob = s.seal(b"secret key", b"row-1");
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(s.open(&bad, b"row-1"), Err(SealError::Open)),
                "byte {i}"
            );
        }
        let mut bad = blob.clone();
        bad[0] = 2;
        assert!(matches!(
            s.open(&bad, b"row-1"),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            s.open(&blob[..20], b"row-1"),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            s.open(&[], b"row-1"),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn debug_hides_key() {
        assert_eq!(format!("{:?}", sealer(0xab)), "Sealer(<key redacted>)");
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let (first, created) = Sealer::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), KEY_LEN);
        let (second, created) = Sealer::load_or_create(&path).unwrap();
        assert!(!created);
        let blob = first.seal(b"k", b"a");
        assert_eq!(second.open(&blob, b"a").unwrap(), b"k");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file may remain");
    }

    #[test]
    fn group_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        fs::write(&path, format!("{}\n", STANDARD.encode([1u8; KEY_LEN]))).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Sealer::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SealError::InsecureMode { mode: 0o640, .. }));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
    }

    #[test]
    fn bad_base64_is_refused() {
        assert!(matches!(
            Sealer::from_base64("not base64!"),
            Err(SealError::BadBase64)
        ));
        let short = STANDARD.encode([1u8; 16]);
        assert!(matches!(
            Sealer::from_base64(&short),
            Err(SealError::BadLength(16))
        ));
        assert!(matches!(
            Sealer::from_base64(""),
            Err(SealError::BadLength(0))
        ));
        let ok = format!("{}\n", STANDARD.encode([1u8; KEY_LEN]));
        assert!(Sealer::from_base64(&ok).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        fs::write(&path, "garbage!!\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Sealer::load_or_create(&path),
            Err(SealError::BadBase64)
        ));
    }

    #[test]
    fn env_value_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let env = STANDARD.encode([9u8; KEY_LEN]);
        let (s, created) = Sealer::from_env_or_file(Some(&env), &path).unwrap();
        assert!(!created && !path.exists());
        let blob = sealer(9).seal(b"k", b"a");
        assert_eq!(s.open(&blob, b"a").unwrap(), b"k");
        let (_, created) = Sealer::from_env_or_file(None, &path).unwrap();
        assert!(created && path.exists());
    }
}
