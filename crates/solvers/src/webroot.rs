//! [`WebrootSolver`]: HTTP-01 (RFC 8555 §8.3) through a web server that is already running,
//! by writing each key authorization into its document root at
//! `<root>/.well-known/acme-challenge/<token>`, and removing it afterwards — what certbot's
//! `--webroot` does.
//!
//! Tokens reach here validated (`^[A-Za-z0-9_-]{16,128}$`), so a token is always a plain file
//! name. The two directories are created with mode 0755 when missing (links to directories are
//! followed, as the web server follows them); a symbolic link at the token's place is refused,
//! never followed. Concurrent orders may write into the same directory at once. Files get mode 0644 so the web server can read
//! them whatever the umask. Cleanup removes the files it wrote (and nothing else); the
//! directories stay.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use certfleet_core::{ChallengeKind, PendingChallenge, Solver, SolverError, validate_token};

/// Where HTTP-01 responses live under a document root.
pub const CHALLENGE_DIR: &str = ".well-known/acme-challenge";
/// Mode of a response file.
const FILE_MODE: u32 = 0o644;
/// Mode of a directory created for the responses.
const DIR_MODE: u32 = 0o755;

/// Writes HTTP-01 responses into a web server's document root.
#[derive(Debug, Clone)]
pub struct WebrootSolver {
    name: String,
    root: PathBuf,
}

impl WebrootSolver {
    /// A solver called `name` (as in `[[solvers]]`) writing under `root`.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            root: root.into(),
        }
    }

    /// The file that answers `token`.
    pub fn path_for(&self, token: &str) -> PathBuf {
        self.root.join(CHALLENGE_DIR).join(token)
    }

    fn error(&self, message: String, source: io::Error) -> SolverError {
        SolverError {
            kind: ChallengeKind::Http01,
            message: format!("webroot {}: {message}", self.root.display()),
            source: Some(Box::new(source)),
        }
    }

    fn write(&self, token: &str, body: &[u8]) -> Result<(), SolverError> {
        validate_token(token)
            .map_err(|e| SolverError::new(ChallengeKind::Http01, format!("refusing token: {e}")))?;
        let dir = self.root.join(CHALLENGE_DIR);
        create_dir(&dir).map_err(|e| self.error(format!("creating {}", dir.display()), e))?;
        // The deploy crate's writer: a temporary file renamed into place (the web server never
        // reads half a response), a symbolic link at the file's place refused
        // (links to directories are followed, as the web server follows them).
        certfleet_deploy::files::write_one(&self.path_for(token), body, FILE_MODE).map_err(|e| {
            SolverError {
                kind: ChallengeKind::Http01,
                message: format!("webroot {}: {e}", self.root.display()),
                source: Some(Box::new(e)),
            }
        })
    }

    fn remove(&self, token: &str) -> Result<(), SolverError> {
        if validate_token(token).is_err() {
            return Ok(());
        }
        let path = self.path_for(token);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(format!("removing {}", path.display()), e)),
        }
    }
}

/// Create `dir` and its missing parents with mode 0755 whatever the umask.
fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    for d in missing {
        fs::set_permissions(&d, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SolverError> + Send + 'static,
) -> Result<T, SolverError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SolverError::new(ChallengeKind::Http01, format!("webroot task: {e}")))?
}

#[async_trait]
impl Solver for WebrootSolver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let this = self.clone();
        let files: Vec<(String, Vec<u8>)> = challenges
            .iter()
            .map(|c| {
                (
                    c.token.clone(),
                    c.key_authorization.expose().as_bytes().to_vec(),
                )
            })
            .collect();
        blocking(move || {
            for (token, body) in &files {
                this.write(token, body)?;
            }
            Ok(())
        })
        .await
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let this = self.clone();
        let tokens: Vec<String> = challenges.iter().map(|c| c.token.clone()).collect();
        blocking(move || {
            let mut first_error = None;
            for token in &tokens {
                if let Err(e) = this.remove(token) {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_core::Secret;

    fn challenge(token: &str) -> PendingChallenge {
        PendingChallenge {
            kind: ChallengeKind::Http01,
            identifier: "www.example.test".into(),
            token: token.into(),
            key_authorization: Secret::new(format!("{token}.thumbprint")),
            certificate: "www".into(),
            wildcard: false,
        }
    }

    #[tokio::test]
    async fn writes_readable_files_and_removes_only_them() {
        let root = tempfile::tempdir().unwrap();
        let solver = WebrootSolver::new("webroot", root.path().join("html"));
        let token = "Token_With-Dash_0123456789";
        solver.present(&[challenge(token)]).await.unwrap();
        let path = solver.path_for(token);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{token}.thumbprint")
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        assert_eq!(mode(&root.path().join("html/.well-known")), 0o755);
        let other = root.path().join("html/.well-known/acme-challenge/keep.txt");
        fs::write(&other, "not ours").unwrap();
        solver.cleanup(&[challenge(token)]).await.unwrap();
        assert!(!path.exists());
        assert!(other.exists(), "only its own files are removed");
        solver.cleanup(&[challenge(token)]).await.unwrap();
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_a_token_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let solver = WebrootSolver::new("webroot", root.path());
        let token = "Token_Link_0123456789abcdef";
        fs::create_dir_all(root.path().join(CHALLENGE_DIR)).unwrap();
        let target = root.path().join("elsewhere");
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, solver.path_for(token)).unwrap();
        let e = solver.present(&[challenge(token)]).await.unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        let e = solver
            .present(&[challenge("../../etc/passwd")])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refusing token"), "{e}");
    }
}
