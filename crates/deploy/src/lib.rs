//! Deploying certificates where they are used, and proving that they are served.
//!
//! - [`files`]: the one atomic multi-file writer that `certfleet cert export`, the agent and
//!   `run --once` share. Every file goes to a temporary name first (created with its final
//!   mode, `O_NOFOLLOW`), is fsynced, and only when all are ready are they renamed into place,
//!   under a journal so that a crash mid-way is finished on the next run; a failed rename puts
//!   the earlier files back. Owner, group and mode of replaced files are carried over; the
//!   previous generation can be kept for rollback.
//! - [`perms`]: owners, groups (resolved through NSS) and modes.
//! - [`target`]: the [`DeployTarget`] trait and [`FileTarget`], the file target with certbot's
//!   file names or custom ones. A new target (Kubernetes Secret, S3 object) is a new module
//!   here implementing [`DeployTarget`].
//! - [`hooks`]: check and reload commands as argv lists with `CERTFLEET_*` and certbot's
//!   `RENEWED_*` variables, a timeout and bounded output.
//! - [`probe`]: a TLS handshake that reads the certificate an endpoint really serves, and chain
//!   verification against system roots or a CA file (used by the agent and `certfleet check`).
#![warn(missing_docs)]

pub mod files;
pub mod hooks;
pub mod perms;
pub mod probe;
pub mod target;

use std::io;
use std::path::PathBuf;

pub use files::{PlannedFile, WriteOptions, WrittenFile, restore_previous, write_files};
pub use hooks::{HookCommand, HookEnv, HookOutcome, run_hook};
pub use perms::Ownership;
pub use probe::{Served, ServedCertificate};
pub use target::{Bundle, DeployTarget, Deployment, FileSpec, FileTarget, Part};

/// Why a deployment step failed. Messages name the file, user, group or endpoint involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The directory to write into is something else.
    #[error("{} is {what}, not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
        /// What it is ("a regular file").
        what: String,
    },
    /// A file to replace is a symbolic link (perhaps planted to redirect the write).
    #[error(
        "refusing to write {}: it is a symbolic link; certfleet replaces only regular files (remove the link, or point the target at the real directory)",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A file to replace is a directory, socket or other non-regular file.
    #[error("cannot replace {}: it is {what}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("writing", "renaming into place").
        action: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A user name that NSS does not know.
    #[error("unknown user {0:?} (not in the passwd database)")]
    UnknownUser(String),
    /// A group name that NSS does not know.
    #[error("unknown group {0:?} (not in the group database)")]
    UnknownGroup(String),
    /// A mode that is not octal permission bits, or is unsafe for a key.
    #[error("mode {input:?}: {reason}")]
    Mode {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A file name that is not a plain name inside the directory.
    #[error(
        "file name {0:?} is not valid: use a plain name without '/', not starting with '.certfleet'"
    )]
    FileName(String),
    /// The journal of an interrupted write could not be read.
    #[error("journal {}: {reason}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No TLS connection to an endpoint.
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// `host:port`.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A TLS handshake that failed or showed nothing usable.
    #[error("TLS handshake with {endpoint} failed: {reason}")]
    Handshake {
        /// `host:port`.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A CA file or certificate that could not be used.
    #[error("{0}")]
    Trust(String),
    /// Blocking work could not finish (the task panicked or was cancelled).
    #[error("background task failed: {0}")]
    Task(String),
}

impl DeployError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DeployError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
