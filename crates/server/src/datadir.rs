//! The data directory of the embedded default: what `certfleet server` creates on first run
//! and what the CLI on the same machine reads to find the server.
//!
//! | file            | mode | content                                          |
//! |-----------------|------|--------------------------------------------------|
//! | `certfleet.db`  | 0600 | the SQLite store                                 |
//! | `kek`           | 0600 | key-encryption key (base64), unless `CERTFLEET_KEK` is set |
//! | `admin-token`   | 0600 | the admin API token                              |
//! | `server.json`   | 0600 | where the running server listens (for people and scripts) |
//! | `api.sock`      | 0600 | the running server's API, for the CLI on this machine |
//! | `lock`          | 0600 | held locked (`flock`) by the one server using the directory; holds its PID |
//!
//! The local CLI talks to the server only through `api.sock`: a socket in a directory of mode
//! 0700 that the server creates after taking the lock, so the admin token never goes to a
//! stale TCP port that another program may have taken since.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Bytes of randomness in an API token.
pub const TOKEN_BYTES: usize = 32;
/// Mode of the lock file and the API socket.
const PRIVATE_MODE: u32 = 0o600;

/// The exclusive lock a server holds on its data directory for as long as it runs; released
/// when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another certfleet process{} is already running on data directory {} (a `certfleet server` or a `run --once`); stop it or let it finish first, or give this one its own --data-dir",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_else(|| " (its pid is not written yet)".into()),
        .dir.display()
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The PID the running server wrote into the lock file, if readable.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or written.
    #[error("cannot lock data directory {}: {source}", .dir.display())]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// What `server.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Base URL of the REST API, e.g. `http://127.0.0.1:8555`.
    pub api: String,
    /// Address of the HTTP-01 responder.
    pub http01: String,
    /// Process id of the server.
    pub pid: u32,
    /// Base URL of the REST API over TLS, when it listens on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_api: Option<String>,
    /// SHA-256 fingerprint agents pin for the TLS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl DataDir {
    /// A data directory at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Create the directory with mode 0700 if needed.
    pub fn create(&self) -> io::Result<()> {
        fsutil::create_private_dir(&self.root)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("certfleet.db")
    }

    /// The key-encryption key file.
    pub fn kek_path(&self) -> PathBuf {
        self.root.join("kek")
    }

    /// The admin token file.
    pub fn token_path(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// The running server's address file.
    pub fn server_info_path(&self) -> PathBuf {
        self.root.join("server.json")
    }

    /// The Unix socket of the running server's API (for the CLI on this machine).
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("api.sock")
    }

    /// The lock file a running server holds.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Take the exclusive lock on the data directory (`flock`, non-blocking) and write our
    /// PID into the lock file. Fails with [`LockError::Held`] naming the running server's PID.
    pub fn lock(&self) -> Result<DataDirLock, LockError> {
        let io_err = |source| LockError::Io {
            dir: self.root.clone(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_MODE)
            .open(self.lock_path())
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: self.root.clone(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(DataDirLock { _file: file })
    }

    /// Remove what only a running server may leave: `api.sock` and `server.json`.
    pub fn remove_runtime_files(&self) {
        for path in [self.socket_path(), self.server_info_path()] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a runtime file");
            }
        }
    }

    /// Read the admin token, or create one (returns `true` when created).
    pub fn load_or_create_token(&self) -> io::Result<(String, bool)> {
        match self.read_token() {
            Ok(token) => Ok((token, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let token = new_token();
                fsutil::write_atomic(&self.token_path(), format!("{token}\n").as_bytes(), 0o600)?;
                Ok((token, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Read the admin token.
    pub fn read_token(&self) -> io::Result<String> {
        let text = std::fs::read_to_string(self.token_path())?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is empty", self.token_path().display()),
            ));
        }
        Ok(token)
    }

    /// Read the admin token, telling a missing file apart: `Ok(None)` when there is none.
    pub fn read_token_if_present(&self) -> io::Result<Option<String>> {
        match self.read_token() {
            Ok(token) => Ok(Some(token)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Record where the server listens.
    pub fn write_server_info(&self, info: &ServerInfo) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.server_info_path(), &json, 0o600)
    }

    /// Where the server said it listens.
    pub fn read_server_info(&self) -> io::Result<ServerInfo> {
        let text = std::fs::read(self.server_info_path())?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.server_info_path().display()),
            )
        })
    }
}

/// A fresh random token (base64url of [`TOKEN_BYTES`] random bytes).
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create().unwrap();
        let (token, created) = data.load_or_create_token().unwrap();
        assert!(created);
        assert_eq!(token.len(), 43);
        let (again, created) = data.load_or_create_token().unwrap();
        assert!(!created);
        assert_eq!(token, again);
        let mode = std::fs::metadata(data.token_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(data.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn second_lock_on_a_data_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        let held = data.lock().unwrap();
        let err = data.lock().unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        assert!(err.to_string().contains("already running"), "{err}");
        drop(held);
        data.lock().expect("the lock is free again once dropped");
    }
}
